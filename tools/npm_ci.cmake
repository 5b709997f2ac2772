# npm_ci.cmake — installs a committed package.json + package-lock.json into a directory of
# the build tree with `npm ci`, never into the source tree.
#
#   cmake -DNPM=/usr/bin/npm -DSRC=<dir with package.json> -DDST=<build dir> -P npm_ci.cmake
#
# Skips the install when DST already holds exactly this lockfile's packages (the copy of
# the lockfile taken after the last successful install is identical), so running it from
# every build or test run costs nothing once done. npm's own cache makes a repeated
# install cheap too. --ignore-scripts: no package gets to run code at install time.
foreach(v NPM SRC DST)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "npm_ci.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT NPM OR NOT EXISTS "${NPM}")
  message(FATAL_ERROR "npm not found (NPM=${NPM}): run scripts/deps.sh, which installs nodejs and npm")
endif()

set(_lock "${SRC}/package-lock.json")
set(_done "${DST}/installed-package-lock.json")
if(EXISTS "${_done}" AND EXISTS "${DST}/node_modules")
  file(SHA256 "${_lock}" _want)
  file(SHA256 "${_done}" _have)
  if(_want STREQUAL _have)
    return()
  endif()
endif()

file(MAKE_DIRECTORY "${DST}")
file(REMOVE "${_done}")
configure_file("${SRC}/package.json" "${DST}/package.json" COPYONLY)
configure_file("${_lock}" "${DST}/package-lock.json" COPYONLY)
execute_process(
  COMMAND "${NPM}" ci --prefix "${DST}" --no-audit --no-fund --ignore-scripts --loglevel=error
  RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "npm ci in ${DST} failed (${_rc}): the npm registry must be reachable "
                      "for the first build; packages are pinned in ${_lock}")
endif()
configure_file("${_lock}" "${_done}" COPYONLY)
