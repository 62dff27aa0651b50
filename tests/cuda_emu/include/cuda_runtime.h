/* CUDA emulator (tests/cuda_emu): see cuda_emu.h */
#include "cuda_emu.h"
