/* The library's own footprint in every process that loads it (issue 16, "start-up footprint").
 * The libraries are no_std with a panic handler of their own (src/lib.rs, build.rs): std's
 * panic, backtrace and formatting code (gimli, addr2line: 217 KiB of code) stays out, and so
 * does libgcc_s, which std needs for unwinding. Checked on the loaded library itself:
 * - its executable segment is under 320 KiB (389 KiB with std, 172 KiB without; 256 KiB with
 *   the heap profiler, of which the pprof writer's encoder and deflate are about 80 KiB that
 *   are paged in only when a .pb.gz profile is written);
 * - it needs libc only (DT_NEEDED): no libgcc_s, no libm;
 * - the personality routine that core's landing pads name is defined but hidden, so it never
 *   stands in for another library's;
 * - the process's memory functions still work: a block of each domain round-trips. */
#define _GNU_SOURCE
#include "check.h"
#include "testutil.h"
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <pyalloc.h>
#include <string.h>

struct found {
    int seen;
    size_t exec_bytes;
    int needed, needs_libc, needs_other;
    char other[256];
};

static int visit(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    struct found *f = arg;
    if (!info->dlpi_name || !strstr(info->dlpi_name, "libpyalloc")) return 0;
    f->seen = 1;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) f->exec_bytes += ph->p_memsz;
        if (ph->p_type == PT_DYNAMIC) dyn = (const void *)(info->dlpi_addr + ph->p_vaddr);
    }
    const char *strtab = NULL;
    for (const ElfW(Dyn) *d = dyn; d && d->d_tag != DT_NULL; d++)
        if (d->d_tag == DT_STRTAB) strtab = (const char *)d->d_un.d_ptr; /* relocated by ld.so */
    for (const ElfW(Dyn) *d = dyn; d && strtab && d->d_tag != DT_NULL; d++) {
        if (d->d_tag != DT_NEEDED) continue;
        const char *name = strtab + d->d_un.d_val;
        f->needed++;
        if (strncmp(name, "libc.so", 7) == 0) {
            f->needs_libc = 1;
        } else if (strncmp(name, "ld-linux", 8) != 0) {
            f->needs_other++;
            strncat(f->other, name, sizeof f->other - strlen(f->other) - 2);
            strcat(f->other, " ");
        }
    }
    return 1;
}

int main(void) {
    struct found f = {0};
    dl_iterate_phdr(visit, &f);
    CHECK(f.seen, "libpyalloc is not among the loaded objects");
    CHECK(f.exec_bytes > 64 * 1024 && f.exec_bytes < 320 * 1024,
          "executable segment of libpyalloc: %zu bytes (budget 320 KiB)", f.exec_bytes);
    CHECK(f.needs_libc, "libpyalloc does not name libc among its %d DT_NEEDED entries", f.needed);
    CHECK(f.needs_other == 0, "libpyalloc needs more than libc: %s", f.other);

    CHECK(dlsym(RTLD_DEFAULT, "rust_eh_personality") == NULL,
          "rust_eh_personality is exported: it could stand in for another Rust library's");
    CHECK(dlsym(RTLD_DEFAULT, "rust_begin_unwind") == NULL, "std's panic entry is exported");
    CHECK(dlsym(RTLD_DEFAULT, "PyObject_Malloc") != NULL, "PyObject_Malloc is not exported");

    for (int d = 0; d < 3; d++) {
        unsigned char *p = APIS[d].malloc(100);
        CHECK(p != NULL, "%s malloc(100) failed", APIS[d].name);
        if (!p) continue;
        fill_bytes(p, 100, 7u + (uint32_t)d);
        CHECK(check_bytes(p, 100, 7u + (uint32_t)d) == 100, "%s block lost its contents", APIS[d].name);
        CHECK(pyalloc_domain_of(p) == APIS[d].domain, "%s block owned by domain %d", APIS[d].name,
              pyalloc_domain_of(p));
        APIS[d].free(p);
    }
    TEST_MAIN_END();
}
