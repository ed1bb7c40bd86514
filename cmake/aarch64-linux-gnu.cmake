# Cross build for 64-bit ARM Linux with Debian's gcc-aarch64-linux-gnu;
# tests run under qemu-user (qemu-aarch64) against the cross libc.
#   cmake -S . -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# The arm64 builds of the library's dependencies are not installed by the
# cross packages, so this file also selects the dependency-free build
# (CWBA_MINIMAL, cmake/minimal.cmake).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu)
set(CWBA_MINIMAL ON CACHE BOOL "dependency-free build (cross)")
