# The Debian package, made by CPack (docs/packaging.md):
#   cmake -S . -B build-deb -DCMAKE_INSTALL_PREFIX=/usr \
#     -DCMAKE_INSTALL_LIBDIR=lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)
#   cmake --build build-deb -j --target package   # est-coaps_<version>_<arch>.deb
# Any other prefix installs the same programs, plugins, headers, man pages
# and examples with `cmake --install`, but nothing outside the prefix.
if(EST_FUZZ)
  return()
endif()

add_subdirectory(${PROJECT_SOURCE_DIR}/docs/man ${PROJECT_BINARY_DIR}/docs/man)

set(est_deploy ${PROJECT_SOURCE_DIR}/deploy)
install(FILES ${est_deploy}/coapd.conf ${est_deploy}/mosquitto.conf ${est_deploy}/mosquitto.acl
  ${est_deploy}/csrattrs.der ${est_deploy}/est-enroll-renew.service
  ${est_deploy}/est-enroll-renew.timer
  DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
install(FILES ${est_deploy}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR}
  RENAME README.deploy.md)

# The package layout: files the system finds at fixed places. Only for the
# /usr prefix, so `cmake --install --prefix P` of any other tree writes
# under P only.
string(REGEX MATCH "^lib/[a-z0-9_]+-[a-z0-9_]+-[a-z0-9_]+$" est_multiarch_libdir
  "${CMAKE_INSTALL_LIBDIR}")
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(EST_PACKAGE_LAYOUT ON)
else()
  set(EST_PACKAGE_LAYOUT OFF)
endif()

if(EST_PACKAGE_LAYOUT)
  # The conffile and the folder for the CA files (docs/packaging.md).
  install(FILES ${est_deploy}/coapd.conf DESTINATION /etc/est-coaps)
  install(DIRECTORY DESTINATION /etc/est-coaps/ca)
  # Debian 12 keeps units in /lib/systemd/system (systemd.pc).
  install(FILES ${est_deploy}/coapd.service DESTINATION /lib/systemd/system)
  install(FILES ${est_deploy}/est-coaps.sysusers DESTINATION lib/sysusers.d
    RENAME est-coaps.conf)
  install(FILES ${est_deploy}/est-coaps.tmpfiles DESTINATION lib/tmpfiles.d
    RENAME est-coaps.conf)
  install(FILES ${est_deploy}/debian/copyright DESTINATION ${CMAKE_INSTALL_DOCDIR})
  # A native package's changelog, gzipped without a timestamp.
  string(TIMESTAMP est_changelog_date "%a, %d %b %Y %H:%M:%S +0000" UTC)
  configure_file(${est_deploy}/debian/changelog.in
    ${PROJECT_BINARY_DIR}/debian/changelog @ONLY)
  add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/debian/changelog.gz
    COMMAND gzip -9nc ${PROJECT_BINARY_DIR}/debian/changelog
      > ${PROJECT_BINARY_DIR}/debian/changelog.gz
    DEPENDS ${PROJECT_BINARY_DIR}/debian/changelog VERBATIM)
  add_custom_target(debian_changelog ALL DEPENDS ${PROJECT_BINARY_DIR}/debian/changelog.gz)
  install(FILES ${PROJECT_BINARY_DIR}/debian/changelog.gz DESTINATION ${CMAKE_INSTALL_DOCDIR})
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME est-coaps)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "EST over secure CoAP server (RFC 9148)")
set(CPACK_PACKAGE_CONTACT "est-coaps maintainers <est-coaps@example.org>")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The synopsis is CPACK_PACKAGE_DESCRIPTION_SUMMARY; this is the long part.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "coapd is a small CoAP-over-DTLS server that loads plugins. With est_coaps.so
it is an EST-coaps server: constrained devices get X.509 certificates from an
embedded CA, and enrollments that need a person wait until an operator
approves them with estctl or over MQTT (mosquitto_est.so, a broker plugin).
The package also has est-enroll, a device-side client, and est-bench.")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS mosquitto)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${est_deploy}/debian/postinst ${est_deploy}/debian/prerm
  ${est_deploy}/debian/postrm ${est_deploy}/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
# Absolute destinations (/etc, /lib/systemd) need DESTDIR staging.
set(CPACK_SET_DESTDIR ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Read by cpack: refuse a tree not configured for the package layout.
set(CPACK_EST_LAYOUT_OK OFF)
if(EST_PACKAGE_LAYOUT AND est_multiarch_libdir)
  set(CPACK_EST_LAYOUT_OK ON)
endif()
set(CPACK_PROJECT_CONFIG_FILE ${PROJECT_SOURCE_DIR}/cmake/package-check.cmake)
include(CPack)

if(EST_TESTS)
  # Each page renders without warnings and names every option its tool has.
  add_test(NAME it.man COMMAND bash ${PROJECT_SOURCE_DIR}/tests/integration/man.sh)
  set_tests_properties(it.man PROPERTIES LABELS integration TIMEOUT 120
    ENVIRONMENT "COAPD=$<TARGET_FILE:coapd>;ESTCTL=$<TARGET_FILE:estctl>;EST_ENROLL=$<TARGET_FILE:est-enroll>;EST_BENCH=$<TARGET_FILE:est-bench>;EST_PLUGIN=$<TARGET_FILE:est_coaps>;MOSQ_PLUGIN=$<TARGET_FILE:mosquitto_est>;EST_MAN_DIR=${PROJECT_BINARY_DIR}/docs/man")
  # Build the .deb, lintian it, install it, run it, remove and purge it.
  add_test(NAME it.package COMMAND bash ${PROJECT_SOURCE_DIR}/tests/integration/package.sh)
  set_tests_properties(it.package PROPERTIES LABELS integration TIMEOUT 600
    RUN_SERIAL ON
    ENVIRONMENT "COAPD=$<TARGET_FILE:coapd>;EST_SOURCE_DIR=${PROJECT_SOURCE_DIR};EST_BUILD_DIR=${PROJECT_BINARY_DIR};EST_SCRIPTS=${PROJECT_SOURCE_DIR}/scripts")
endif()
