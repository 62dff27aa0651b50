/* CUDA emulator (tests/cuda_emu): see cublas_emu.h */
#include "cublas_emu.h"
