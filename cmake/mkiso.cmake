# cmake -P script: builds a hybrid BIOS/UEFI GRUB ISO around one kernel ELF.
# Inputs: ELF GRUB_CFG ISO STAGING GRUB_MKRESCUE GRUB_FILE OBJCOPY.
#
# The ISO is kept small by installing only the GRUB modules the boot needs,
# no fonts, locales or themes, and xz-compressing what remains.

cmake_minimum_required(VERSION 3.25)

execute_process(COMMAND ${GRUB_FILE} --is-x86-multiboot2 ${ELF} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mkiso: ${ELF} has no valid multiboot2 header (grub-file --is-x86-multiboot2 failed)")
endif()

file(REMOVE_RECURSE ${STAGING})
file(MAKE_DIRECTORY ${STAGING}/boot/grub)
execute_process(COMMAND ${OBJCOPY} --strip-debug ${ELF} ${STAGING}/boot/kernel.elf
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mkiso: objcopy --strip-debug failed for ${ELF}")
endif()
file(COPY_FILE ${GRUB_CFG} ${STAGING}/boot/grub/grub.cfg)

execute_process(
  COMMAND ${GRUB_MKRESCUE} -o ${ISO}
    --compress=xz --fonts= --locales= --themes=
    "--install-modules=normal multiboot2 iso9660 part_msdos part_gpt fat search search_fs_uuid search_label search_fs_file configfile echo test"
    ${STAGING}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mkiso: grub-mkrescue failed:\n${out}")
endif()
