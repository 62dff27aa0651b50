#!/usr/bin/env python3
"""Packs this machine's PDF and video libraries (Poppler glib + cairo, FFmpeg) for the GPU machine,
whose image has none of them and cannot install packages (scripts/gpu-deps.sh calls this).

    scripts/gpu-media-bundle.py OUT.tar.xz

The archive holds, under media/:
  lib/        the shared libraries nanovl's PDF and video code needs and everything they load
              (ELF DT_NEEDED, followed from libpoppler-glib, libcairo, libavformat, libavcodec,
              libavutil, libswscale), except the C library and libstdc++/libgcc_s, which every
              glibc system has. Debian links its FFmpeg against dozens of codecs, muxers and
              network libraries nanovl never calls (encoders such as x264/x265/SVT-AV1/rav1e,
              librsvg, GnuTLS, libxml2 with ICU's 31 MB of data, X11, VA-API, ...): each of those
              is replaced by a stub with the same SONAME exporting the same symbols (same
              versions, same data sizes) whose functions return 0 (NULL). The loader resolves
              every symbol at load (the libraries are linked with BIND_NOW), so the stubs let them
              load. Some are called: FFmpeg's codec registry asks each codec library for its static
              data on first use (x265_api_get: NULL reads as "no such build"), so stubs cannot
              trap; they answer "not available". None does work nanovl needs (decoding
              H.264/HEVC/VP8/VP9/AV1/MPEG-4/images, rendering PDF pages): gpu-media-check.sh runs
              the media and end-to-end tests, whose goldens are exact, with the bundle's libraries
              first. 180 MB of libraries become about 45.
  include/    the headers nanovl's media code includes (FFmpeg's four libraries, poppler-glib,
              GLib/GObject/GIO, cairo); libc's are the GPU machine's own.
  pkgconfig/  libavformat, libavcodec, libavutil, libswscale, poppler-glib and cairo .pc files
              with "@PREFIX@" for the folder the archive is unpacked in (gpu-check.sh fills it).
The check that the stubs are never called and that nothing outside the bundle is loaded:
scripts/gpu-media-check.sh (runs the media and end-to-end tests with the bundle's libraries
first on the loader's path).
"""
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

LIBDIR = "/lib/x86_64-linux-gnu"
# on every glibc system (the GPU machine's newer glibc and libstdc++ run libraries built for older)
BASE = {"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "ld-linux-x86-64.so.2",
        "libresolv.so.2", "libstdc++.so.6", "libgcc_s.so.1"}
ROOTS = ["libpoppler-glib.so.8", "libcairo.so.2", "libgobject-2.0.so.0", "libglib-2.0.so.0", "libavformat.so.59",
         "libavcodec.so.59", "libavutil.so.57", "libswscale.so.6"]
# never called by nanovl (the demuxers of libgme and libopenmpt are kept: FFmpeg asks every demuxer
# to probe each file it opens): encoders, network protocols and TLS, subtitles and teletext, hardware
# decoding APIs, X11, image formats FFmpeg or Poppler can write or read that nanovl does not use
# through them (SVG, JPEG XL, TIFF export), CD/Blu-ray/tracker/game-music demuxers
STUB = {
    "libcodec2.so.1.0", "libx265.so.199", "librsvg-2.so.2", "libSvtAv1Enc.so.1", "librav1e.so.0", "libgnutls.so.30",
    "libx264.so.164", "libxml2.so.2", "libnss3.so", "libsmime3.so", "libnspr4.so",
    "libssh-gcrypt.so.4", "libsrt-gnutls.so.1.5", "libzmq.so.5", "libjxl.so.0.7", "libjxl_threads.so.0.7",
    "libbluray.so.2", "libchromaprint.so.1", "librabbitmq.so.4", "librist.so.4", "libva.so.2", "libva-drm.so.2",
    "libva-x11.so.2", "libvdpau.so.1", "libmfx.so.1", "libzvbi.so.0", "libxvidcore.so.4", "libvorbisenc.so.2",
    "libtheoraenc.so.1", "libmp3lame.so.0", "libshine.so.3", "libtwolame.so.0", "libX11.so.6", "libxcb.so.1",
    "libXext.so.6", "libXrender.so.1", "libxcb-shm.so.0", "libxcb-render.so.0", "libXfixes.so.3", "libdrm.so.2",
    "libOpenCL.so.1", "libsnappy.so.1", "libssl.so.3", "libcrypto.so.3", "libdc1394.so.25",
    "libgsm.so.1", "libspeex.so.1", "libsoxr.so.0", "libtiff.so.6",
}
# the libraries linked by name (-l): their unversioned .so link for the linker
LINKED = {"libpoppler-glib.so.8": "libpoppler-glib.so", "libcairo.so.2": "libcairo.so",
          "libgobject-2.0.so.0": "libgobject-2.0.so", "libglib-2.0.so.0": "libglib-2.0.so",
          "libavformat.so.59": "libavformat.so", "libavcodec.so.59": "libavcodec.so",
          "libavutil.so.57": "libavutil.so", "libswscale.so.6": "libswscale.so"}
INCLUDES = [("/usr/include/x86_64-linux-gnu/libavcodec", "include/libavcodec"),
            ("/usr/include/x86_64-linux-gnu/libavformat", "include/libavformat"),
            ("/usr/include/x86_64-linux-gnu/libavutil", "include/libavutil"),
            ("/usr/include/x86_64-linux-gnu/libswscale", "include/libswscale"),
            ("/usr/include/poppler/glib", "include/poppler/glib"),
            ("/usr/include/glib-2.0", "include/glib-2.0"),
            ("/usr/lib/x86_64-linux-gnu/glib-2.0/include", "lib/glib-2.0/include"),
            ("/usr/include/cairo", "include/cairo")]


def run(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def needed(path):
    return [l.split("[")[1].split("]")[0] for l in run("readelf", "-d", path).splitlines() if "(NEEDED)" in l]


def closure():
    seen, stack = [], list(ROOTS)
    while stack:
        lib = stack.pop()
        if lib in seen or lib in BASE:
            continue
        seen.append(lib)
        if lib not in STUB:
            stack.extend(needed(os.path.join(LIBDIR, lib)))
    return seen


def exported(path):
    """(name, version or None, default, kind, size) of every symbol path defines."""
    out = []
    for line in run("readelf", "--dyn-syms", "-W", path).splitlines():
        f = line.split()
        if len(f) < 8 or not f[0].endswith(":") or f[6] == "UND":
            continue
        kind, bind, name = f[3], f[4], f[7]
        if kind not in ("FUNC", "IFUNC", "OBJECT", "TLS", "NOTYPE") or bind not in ("GLOBAL", "WEAK"):
            continue
        ver, default = None, True
        if "@@" in name:
            name, ver = name.split("@@", 1)
        elif "@" in name:
            name, ver = name.split("@", 1)
            default = False
        if f[6] == "ABS":  # a version node's own symbol
            continue
        size = int(f[2], 0) if f[2].startswith("0x") else int(f[2])
        out.append((name, ver, default, kind, size))
    return out


def make_stub(lib, dest, work):
    """A library named lib exporting lib's symbols (versions and sizes kept), functions returning 0."""
    src = os.path.join(LIBDIR, lib)
    syms = exported(src)
    asm, versions = [".text"], []
    for i, (name, ver, default, kind, size) in enumerate(syms):
        label = f"nvl_stub_{i}" if ver else name
        if ver and ver not in versions:
            versions.append(ver)
        if kind in ("FUNC", "IFUNC", "NOTYPE"):
            asm += [".text", f".globl {label}", f".type {label},@function", f"{label}: xorl %eax, %eax", "xorl %edx, %edx", "ret", f".size {label}, .-{label}"]
        elif kind == "TLS":
            asm += [".section .tbss,\"awT\",@nobits", f".globl {label}", f".type {label},@object",
                    f".size {label}, {max(size, 1)}", f"{label}: .zero {max(size, 1)}"]
        else:
            asm += [".data", ".balign 16", f".globl {label}", f".type {label},@object", f".size {label}, {max(size, 1)}",
                    f"{label}: .zero {max(size, 1)}"]
        if ver:
            asm.append(f".symver {label}, {name}{'@@' if default else '@'}{ver}")
    s = os.path.join(work, lib + ".S")
    with open(s, "w") as fh:
        fh.write("\n".join(asm) + "\n.section .note.GNU-stack,\"\",@progbits\n")
    cmd = ["gcc", "-shared", "-nostdlib", "-o", dest, s, f"-Wl,-soname,{lib}"]
    if versions:
        vs = os.path.join(work, lib + ".map")
        with open(vs, "w") as fh:
            fh.write("".join(f"{v} {{ }};\n" for v in versions))
        cmd.append(f"-Wl,--version-script={vs}")
    subprocess.run(cmd, check=True)


def pc(name, version, cflags, libs):
    return (f"prefix=@PREFIX@\nlibdir=${{prefix}}/lib\nincludedir=${{prefix}}/include\n\nName: {name}\n"
            f"Description: {name} (nanovl's GPU-machine bundle)\nVersion: {version}\nCflags: {cflags}\nLibs: {libs}\n")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp()
    try:
        root = os.path.join(work, "media")
        os.makedirs(os.path.join(root, "lib"))
        os.makedirs(os.path.join(root, "pkgconfig"))
        libs = closure()
        n_stub = 0
        for lib in libs:
            dest = os.path.join(root, "lib", lib)
            if lib in STUB:
                make_stub(lib, dest, work)
                n_stub += 1
            else:
                shutil.copyfile(os.path.realpath(os.path.join(LIBDIR, lib)), dest)
        for lib, link in LINKED.items():
            os.symlink(lib, os.path.join(root, "lib", link))
        for src, dst in INCLUDES:
            shutil.copytree(src, os.path.join(root, dst), symlinks=True)
        ver = lambda m: run("pkg-config", "--modversion", m).strip()
        for m, lib in (("libavformat", "avformat"), ("libavcodec", "avcodec"), ("libavutil", "avutil"),
                       ("libswscale", "swscale")):
            with open(os.path.join(root, "pkgconfig", m + ".pc"), "w") as fh:
                fh.write(pc(m, ver(m), "-I${includedir}", f"-L${{libdir}} -l{lib}"))
        with open(os.path.join(root, "pkgconfig", "cairo.pc"), "w") as fh:
            fh.write(pc("cairo", ver("cairo"), "-I${includedir}/cairo", "-L${libdir} -lcairo"))
        with open(os.path.join(root, "pkgconfig", "poppler-glib.pc"), "w") as fh:
            fh.write(pc("poppler-glib", ver("poppler-glib"),
                        "-I${includedir}/poppler/glib -I${includedir}/glib-2.0 -I${libdir}/glib-2.0/include "
                        "-I${includedir}/cairo", "-L${libdir} -lpoppler-glib -lgobject-2.0 -lglib-2.0"))
        with tarfile.open(out, "w:xz", preset=9) as tar:
            tar.add(root, arcname="media")
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs
                   if not os.path.islink(os.path.join(d, f)))
        print(f"gpu-media-bundle: {len(libs)} libraries ({n_stub} stubs), {size / 1e6:.1f} MB unpacked, "
              f"{os.path.getsize(out) / 1e6:.1f} MB in {out}")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
