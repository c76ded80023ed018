# cmake -P script: builds a hybrid BIOS/UEFI GRUB ISO around one kernel ELF.
# Inputs: ELF GRUB_CFG ISO STAGING GRUB_MKRESCUE GRUB_FILE OBJCOPY.
#
# grub-mkrescue would do all of this in one command, but its ISO is ~4 MB:
# it always adds a 2.88 MB FAT image for UEFI, a Mac boot.efi and whole
# module directories. We assemble the same kind of ISO by hand instead
# (~0.9 MB), in the steps grub-mkrescue itself takes:
#
#   1. grub-mkimage builds two self-contained GRUB "core" images, one per
#      firmware, with every module the boot needs linked in, so the ISO
#      carries no module directories. A tiny embedded config makes each
#      core find the ISO and then run its /boot/grub/grub.cfg.
#   2. mtools wraps the UEFI core in a small FAT image, sized to fit: UEFI
#      firmware boots a CD by reading /EFI/BOOT/BOOTX64.EFI from such an image.
#   3. xorriso writes the ISO 9660 image with two El Torito boot entries
#      (BIOS: the i386-pc core; UEFI: the FAT image) plus MBR/GPT tables, so
#      the same file also boots when written to a USB stick.
#
# The result is laid out like this:
#   /boot/kernel.elf          the kernel, debug info stripped
#   /boot/grub/grub.cfg       the menu (from GRUB_CFG)
#   /boot/grub/bios.img       BIOS El Torito boot image (i386-pc core)
#   /boot/grub/efi.img        UEFI El Torito boot image (FAT with BOOTX64.EFI)

cmake_minimum_required(VERSION 3.25)

# --- Tools ------------------------------------------------------------------
# grub-mkimage and the GRUB platform directories come from the same install
# as GRUB_MKRESCUE (e.g. /usr/bin/grub-mkrescue -> /usr/lib/grub/<platform>).
# xorriso and mtools are what grub-mkrescue itself runs, so no new
# dependencies appear.
get_filename_component(grub_bindir ${GRUB_MKRESCUE} DIRECTORY)
get_filename_component(grub_prefix ${grub_bindir} DIRECTORY)
find_program(GRUB_MKIMAGE grub-mkimage HINTS ${grub_bindir} REQUIRED)
find_program(XORRISO xorriso REQUIRED)
find_program(MFORMAT mformat REQUIRED)
find_program(MMD mmd REQUIRED)
find_program(MCOPY mcopy REQUIRED)

foreach(platform i386-pc x86_64-efi)
  set(dir ${grub_prefix}/lib/grub/${platform})
  if(NOT EXISTS ${dir}/moddep.lst)
    message(FATAL_ERROR "mkiso: GRUB ${platform} modules not found in ${dir} "
                        "(install grub-pc-bin / grub-efi-amd64-bin)")
  endif()
  string(REPLACE "-" "_" var ${platform})
  set(grub_${var}_dir ${dir})
endforeach()

# run(<what> <command>...): runs a command and stops with its output on failure.
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    list(JOIN ARGN " " cmd)
    message(FATAL_ERROR "mkiso: ${what} failed (exit ${rc}):\n${cmd}\n${out}")
  endif()
endfunction()

# --- Kernel and menu -------------------------------------------------------
execute_process(COMMAND ${GRUB_FILE} --is-x86-multiboot2 ${ELF} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mkiso: ${ELF} has no valid multiboot2 header (grub-file --is-x86-multiboot2 failed)")
endif()

file(REMOVE_RECURSE ${STAGING})
file(MAKE_DIRECTORY ${STAGING}/iso/boot/grub ${STAGING}/work)
set(iso_root ${STAGING}/iso)  # becomes the ISO's file tree
set(work ${STAGING}/work)     # intermediate files, not on the ISO
run("objcopy --strip-debug ${ELF}" ${OBJCOPY} --strip-debug ${ELF} ${iso_root}/boot/kernel.elf)
file(COPY_FILE ${GRUB_CFG} ${iso_root}/boot/grub/grub.cfg)

# --- 1. GRUB core images ---------------------------------------------------
# GRUB starts with $root set to the device it was booted from (the CD) and
# runs this embedded config; afterwards it enters normal mode, which reads
# $prefix/grub.cfg. The search only confirms the boot device holds our
# grub.cfg (--hint tries it first) and otherwise scans the other devices.
file(WRITE ${work}/early.cfg
  "search --no-floppy --file --set=root --hint=\"$root\" /boot/grub/grub.cfg\n"
  "set prefix=($root)/boot/grub\n")

# What grub.cfg needs: normal (menus, scripting), multiboot2 and boot (to
# load and start the kernel), search (the early config) and iso9660 (to
# read the CD). grub-mkimage adds their dependencies by itself.
set(common_modules normal multiboot2 boot search iso9660)

# BIOS: an El Torito no-emulation core that reads the CD via the BIOS.
run("grub-mkimage (i386-pc)"
  ${GRUB_MKIMAGE} --format=i386-pc-eltorito --directory=${grub_i386_pc_dir}
    --prefix=/boot/grub --config=${work}/early.cfg
    --output=${iso_root}/boot/grub/bios.img
    ${common_modules} biosdisk)

# UEFI: a PE executable that reads disks via UEFI (efidisk is built in).
# part_msdos/part_gpt/fat let it also find grub.cfg when the ISO is
# written to a USB stick and booted from its GPT EFI partition.
run("grub-mkimage (x86_64-efi)"
  ${GRUB_MKIMAGE} --format=x86_64-efi --directory=${grub_x86_64_efi_dir}
    --prefix=/boot/grub --config=${work}/early.cfg
    --output=${work}/BOOTX64.EFI
    ${common_modules} part_msdos part_gpt fat)

# --- 2. FAT image for UEFI -------------------------------------------------
# Size it in 512-byte sectors: the EFI binary plus 64 sectors (32 KiB) for
# the boot sector, two FATs, the root directory and the EFI/BOOT folders.
# If it were ever too small, mcopy fails with "Disk full".
file(SIZE ${work}/BOOTX64.EFI efi_bytes)
math(EXPR fat_sectors "(${efi_bytes} + 511) / 512 + 64")
set(efi_img ${iso_root}/boot/grub/efi.img)
run("mformat (efi.img)" ${MFORMAT} -i ${efi_img} -C -T ${fat_sectors} -N 0 ::)
run("mmd (efi.img)" ${MMD} -i ${efi_img} ::/EFI ::/EFI/BOOT)
run("mcopy (efi.img)" ${MCOPY} -i ${efi_img} ${work}/BOOTX64.EFI ::/EFI/BOOT/BOOTX64.EFI)

# --- 3. The ISO ------------------------------------------------------------
run("xorriso" ${XORRISO} -as mkisofs -o ${ISO}
  # Rock Ridge names/permissions; volume label.
  -R -V KHEAP
  # El Torito entry 1, BIOS: load bios.img without floppy emulation.
  # -boot-info-table/--grub2-boot-info patch in where the image lies on
  # the CD, which the GRUB core needs to load the rest of itself.
  -b boot/grub/bios.img -no-emul-boot -boot-load-size 4
  -boot-info-table --grub2-boot-info
  # MBR boot code, so BIOSes can also boot the ISO as a hard disk / USB.
  --grub2-mbr ${grub_i386_pc_dir}/boot_hybrid.img
  # El Torito entry 2, UEFI: the FAT image. -efi-boot-part --efi-boot-image
  # also lists it in a GPT as the EFI system partition (for USB boot),
  # pointing at the same bytes rather than storing a second copy.
  -eltorito-alt-boot -e boot/grub/efi.img -no-emul-boot
  -efi-boot-part --efi-boot-image
  --protective-msdos-label
  # No 300 KiB of trailing padding (only a workaround for ancient Linux
  # CD drivers).
  -no-pad
  ${iso_root})
