# CPACK_PROJECT_CONFIG_FILE (cmake/package.cmake): cpack reads this for
# each generator. A package from a /usr/local tree would hold a coapd
# that looks for its plugins in the wrong folder, so refuse it.
if(CPACK_GENERATOR STREQUAL "DEB" AND NOT CPACK_EST_LAYOUT_OK)
  message(FATAL_ERROR "est-coaps: the .deb needs a tree configured with "
    "-DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_LIBDIR=lib/<multiarch> "
    "(dpkg-architecture -qDEB_HOST_MULTIARCH); see docs/packaging.md")
endif()
