# `cmake --install BUILD --prefix P`: the shared and static libraries, the
# public headers (#include <cwba.h>), cwba.pc, the CMake package
# (find_package(cwba) -> cwba::cwba), the cwba command and the Python package.
include(CMakePackageConfigHelpers)

install(TARGETS cwba_shared EXPORT cwbaTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${CMAKE_BINARY_DIR}/libcwba.a DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS cwba_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES include/cwba.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/cwba DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")

# pkg-config: paths relative to the prefix the file is installed under, so
# `--prefix` at install time is honoured. Static linking takes the
# dependencies from Requires.private / Libs.private.
file(RELATIVE_PATH CWBA_PC_TO_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
configure_file(${CMAKE_CURRENT_LIST_DIR}/cwba.pc.in ${CMAKE_BINARY_DIR}/cwba.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/cwba.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

install(EXPORT cwbaTargets NAMESPACE cwba:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cwba)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/cwbaConfig.cmake.in
  ${CMAKE_BINARY_DIR}/cwbaConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cwba)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/cwbaConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/cwbaConfig.cmake ${CMAKE_BINARY_DIR}/cwbaConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cwba)

# The Python package (python/cwba), with the installed library's path written
# beside it at install time (the prefix is only known then).
set(CWBA_PYTHON_DIR lib/python3/dist-packages CACHE STRING
  "where cmake --install puts the Python package, relative to the prefix")
install(DIRECTORY python/cwba DESTINATION ${CWBA_PYTHON_DIR}
  FILES_MATCHING PATTERN "*.py" PATTERN "__pycache__" EXCLUDE)
install(CODE "
  file(WRITE \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CWBA_PYTHON_DIR}/cwba/_installed.py\"
    \"# Written by cmake --install: the shared library installed with this package.\\n\"
    \"LIBRARY = '\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/libcwba.so.${PROJECT_VERSION_MAJOR}'\\n\")")
