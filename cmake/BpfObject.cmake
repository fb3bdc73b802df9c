# bpf_skeleton(NAME SOURCES a.bpf.c [b.bpf.c ...] [INCLUDES dir ...])
#
# Compiles each source with clang -target bpf, links them with `bpftool gen object` (which also
# strips DWARF and keeps BTF), then generates NAME.skel.h with `bpftool gen skeleton`.
# Header dependencies are tracked through clang's depfiles, so editing a .bpf.h or an ABI
# header rebuilds what includes it. Produces an INTERFACE target NAME_skel whose include
# directory holds NAME.skel.h.
find_program(BPF_CLANG NAMES clang-14 clang REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

# clang -target bpf does not search the host's system include directories; add clang's own
# (asm/types.h and friends) with -idirafter, as libbpf-bootstrap does.
execute_process(
  COMMAND ${BPF_CLANG} -v -E -
  INPUT_FILE /dev/null
  OUTPUT_QUIET
  ERROR_VARIABLE _clang_v)
string(REGEX MATCH "#include <...> search starts here:\n(.*)End of search list" _m "${_clang_v}")
string(REGEX REPLACE "\n *" ";" _sysdirs "${CMAKE_MATCH_1}")
set(BPF_SYS_INCLUDES)
foreach(dir ${_sysdirs})
  if(dir)
    list(APPEND BPF_SYS_INCLUDES -idirafter ${dir})
  endif()
endforeach()

set(BPF_COMMON_INCLUDES
  ${PROJECT_SOURCE_DIR}/bpf/include/vmlinux/x86
  ${PROJECT_SOURCE_DIR}/bpf/include
  ${PROJECT_SOURCE_DIR}/bpf/abi)

function(bpf_skeleton name)
  cmake_parse_arguments(ARG "" "" "SOURCES;INCLUDES" ${ARGN})
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/bpf_${name})
  file(MAKE_DIRECTORY ${out_dir})
  set(inc_flags)
  foreach(dir ${BPF_COMMON_INCLUDES} ${ARG_INCLUDES})
    list(APPEND inc_flags -I${dir})
  endforeach()

  set(objs)
  foreach(src ${ARG_SOURCES})
    get_filename_component(abs ${src} ABSOLUTE)
    get_filename_component(stem ${src} NAME_WE)
    set(obj ${out_dir}/${stem}.bpf.o)
    add_custom_command(
      OUTPUT ${obj}
      COMMAND ${BPF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_x86 -mcpu=v3
        -Wall -Wno-unused-function -Werror
        ${inc_flags} ${BPF_SYS_INCLUDES}
        -MD -MF ${obj}.d
        -c ${abs} -o ${obj}
      DEPENDS ${abs}
      DEPFILE ${obj}.d
      COMMENT "BPF ${name}: clang ${stem}.bpf.c"
      VERBATIM)
    list(APPEND objs ${obj})
  endforeach()

  set(linked ${out_dir}/${name}.bpf.o)
  set(skel ${out_dir}/${name}.skel.h)
  add_custom_command(
    OUTPUT ${linked}
    COMMAND ${BPFTOOL} gen object ${linked} ${objs}
    DEPENDS ${objs}
    COMMENT "BPF ${name}: bpftool gen object"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${BPFTOOL} gen skeleton ${linked} name ${name} > ${skel}.tmp
    COMMAND ${CMAKE_COMMAND} -E rename ${skel}.tmp ${skel}
    DEPENDS ${linked}
    COMMENT "BPF ${name}: bpftool gen skeleton"
    VERBATIM)
  add_custom_target(${name}_skel_gen DEPENDS ${skel})
  add_library(${name}_skel INTERFACE)
  add_dependencies(${name}_skel ${name}_skel_gen)
  target_include_directories(${name}_skel SYSTEM INTERFACE ${out_dir})
  target_link_libraries(${name}_skel INTERFACE vigil_abi PkgConfig::LIBBPF)
endfunction()
