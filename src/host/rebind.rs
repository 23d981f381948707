//! Giving a shared libpython its own calls back.
//!
//! A shared libpython calls its own allocation API through its PLT/GOT (pyenv's builds of
//! 3.8–3.13 do, for `PyObject_Malloc`, `PyMem_Realloc`, `_PyObject_GC_New`, ...), and its type
//! objects hold `PyObject_Free` and `PyObject_GC_Del` as `tp_free`. With pyalloc preloaded,
//! every one of those binds to pyalloc's exports, which in a host only check the host's table
//! and forward or serve: about a dozen instructions more per call than the host's own wrapper
//! and its table call, on the interpreter's hottest path.
//!
//! Once pyalloc is installed in the host's tables, those bindings are pointed back at the
//! host's own definitions: its GOT slots for the calls (`R_X86_64_JUMP_SLOT`, `GLOB_DAT`) and
//! its data words that hold the functions' addresses (`R_X86_64_64`, when they hold pyalloc's
//! export). The host's wrappers dispatch through its tables, which hold pyalloc's functions,
//! so nothing changes but the cost: libpython runs as it does on pymalloc, with pyalloc behind
//! its tables. Only the allocation and object-memory functions are rebound (not the allocator
//! management ones, nor libc's `free` and `realloc`, which pyalloc checks), and only bindings
//! that resolve to pyalloc. Read-only pages (RELRO) are made writable for the store and then
//! read-only again.
//!
//! Uses: the loader's data (`dl_iterate_phdr`), the platform.

use crate::domain::API_C;
use core::ffi::{c_void, CStr};
use core::ptr;

/// The functions whose bindings go back to the host (pyalloc exports them all): the three
/// domains' four functions (`domain::API_C`), then these.
const OBJECT_NAMES: &[&CStr] = &[
    c"_PyObject_New",
    c"_PyObject_NewVar",
    c"PyObject_Init",
    c"PyObject_InitVar",
    c"_PyObject_GC_New",
    c"_PyObject_GC_NewVar",
    c"_PyObject_GC_Resize",
    c"PyObject_GC_Track",
    c"PyObject_GC_UnTrack",
    c"PyObject_GC_Del",
    c"PyObject_GC_IsTracked",
    c"PyObject_GC_IsFinalized",
];
const COUNT: usize = 12 + OBJECT_NAMES.len();

/// Name `k` (below [`COUNT`]) of the functions rebound.
fn name(k: usize) -> &'static CStr {
    if k < 12 {
        API_C[k / 4][k % 4]
    } else {
        OBJECT_NAMES[k - 12]
    }
}

const DT_NULL: i64 = 0;
const DT_PLTRELSZ: i64 = 2;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const DT_RELA: i64 = 7;
const DT_RELASZ: i64 = 8;
const DT_JMPREL: i64 = 23;
const R_X86_64_64: u32 = 1;
const R_X86_64_GLOB_DAT: u32 = 6;
const R_X86_64_JUMP_SLOT: u32 = 7;

#[repr(C)]
struct Dyn {
    tag: i64,
    val: u64,
}

#[repr(C)]
struct Rela {
    offset: u64,
    info: u64,
    addend: i64,
}

#[repr(C)]
struct Sym {
    name: u32,
    info: u8,
    other: u8,
    shndx: u16,
    value: u64,
    size: u64,
}

/// What one rebinding pass did.
#[derive(Clone, Copy, Default, Debug)]
pub struct Rebound {
    /// Call slots (GOT entries) and data words pointed back at the host's functions.
    pub slots: usize,
    pub words: usize,
}

/// The host object's dynamic tables, found from its program headers.
struct Object {
    bias: usize,
    relro: (usize, usize),
    strtab: usize,
    symtab: usize,
    jmprel: (usize, usize),
    rela: (usize, usize),
}

/// Point the host object's bindings of the functions [`name`] lists that resolve to pyalloc (`ours(name)`: the
/// address the host's relocations were bound to, if it is pyalloc's) at the host's own
/// definitions (`theirs(name)`). `host_fn` is any function of the host object. Nothing is
/// done for an executable that defines the functions itself (its calls bind internally).
///
/// # Safety
/// Called while no other thread runs code of the host object through the rebound slots in a
/// way that cares which of two equivalent functions it reaches (every store is one aligned
/// word, and both targets serve the call).
pub unsafe fn rebind(
    host_fn: *mut c_void,
    ours: impl Fn(&CStr) -> Option<usize>,
    theirs: impl Fn(&CStr) -> Option<usize>,
) -> Rebound {
    let mut done = Rebound::default();
    let Some(obj) = find(host_fn as usize) else {
        return done;
    };
    let mut targets: [(usize, usize); COUNT] = [(0, 0); COUNT];
    for (k, t) in targets.iter_mut().enumerate() {
        if let (Some(o), Some(h)) = (ours(name(k)), theirs(name(k))) {
            *t = (o, h);
        }
    }
    // SAFETY: the tables come from the object's own dynamic section, and each location is a
    // relocation target inside the object (word-aligned, mapped).
    unsafe {
        for table in [obj.jmprel, obj.rela] {
            let n = table.1 / size_of::<Rela>();
            for i in 0..n {
                let r = &*(table.0 as *const Rela).add(i);
                let kind = (r.info & 0xffff_ffff) as u32;
                let sym = (r.info >> 32) as usize;
                let known = matches!(kind, R_X86_64_JUMP_SLOT | R_X86_64_GLOB_DAT | R_X86_64_64);
                if sym == 0 || r.addend != 0 || !known {
                    continue;
                }
                let Some(k) = index_of(&obj, sym) else {
                    continue;
                };
                let (o, h) = targets[k];
                if h == 0 {
                    continue;
                }
                let at = obj.bias + r.offset as usize;
                let cur = ptr::read_volatile(at as *const usize);
                // A call slot may still hold its lazy-binding stub; a GOT entry or data word
                // is changed only if it holds pyalloc's export.
                let wanted = if kind == R_X86_64_JUMP_SLOT {
                    cur != h
                } else {
                    cur == o
                };
                if wanted && store(&obj, at, h) {
                    if kind == R_X86_64_64 {
                        done.words += 1;
                    } else {
                        done.slots += 1;
                    }
                }
            }
        }
    }
    done
}

/// Which of the rebound functions ([`name`]) symbol `sym` of `obj` is.
///
/// # Safety
/// `obj`'s tables are valid and `sym` is an index into its symbol table.
unsafe fn index_of(obj: &Object, sym: usize) -> Option<usize> {
    // SAFETY: as stated.
    unsafe {
        let s = &*(obj.symtab as *const Sym).add(sym);
        let sym_name = CStr::from_ptr((obj.strtab + s.name as usize) as *const core::ffi::c_char);
        (0..COUNT).find(|&k| name(k) == sym_name)
    }
}

/// Write `value` at `at`, opening a read-only (RELRO) page for the store.
///
/// # Safety
/// `at` is a word-aligned relocation target of `obj`.
unsafe fn store(obj: &Object, at: usize, value: usize) -> bool {
    let (lo, hi) = obj.relro;
    let ro = at >= lo && at < hi;
    let page = at & !(4095usize);
    // SAFETY: the page is mapped (it holds a relocation target); its protection is restored.
    unsafe {
        if ro
            && libc::mprotect(
                page as *mut c_void,
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
            ) != 0
        {
            return false;
        }
        ptr::write_volatile(at as *mut usize, value);
        if ro {
            libc::mprotect(page as *mut c_void, 4096, libc::PROT_READ);
        }
    }
    true
}

/// The shared object holding `addr`, with its dynamic tables; None for the main executable
/// (its own calls bind internally) or an object without them.
fn find(addr: usize) -> Option<Object> {
    let l = super::objects::object_of(addr)?;
    if l.main {
        return None;
    }
    let (mut dynamic, mut relro) = (0usize, (0usize, 0usize));
    // SAFETY: the program headers of a loaded object stay mapped while it is loaded, and its
    // dynamic section is an array ending with DT_NULL.
    unsafe {
        for i in 0..l.phnum {
            let ph = &*l.phdr.add(i);
            let start = l.bias + ph.p_vaddr as usize;
            let end = start + ph.p_memsz as usize;
            match ph.p_type {
                libc::PT_DYNAMIC => dynamic = start,
                libc::PT_GNU_RELRO => relro = (start & !4095, (end + 4095) & !4095),
                _ => {}
            }
        }
        if dynamic == 0 {
            return None;
        }
        let bias = l.bias;
        let mut o = Object {
            bias,
            relro,
            strtab: 0,
            symtab: 0,
            jmprel: (0, 0),
            rela: (0, 0),
        };
        // The loader relocates the section's addresses in place on x86-64; an address below
        // the bias is still an offset.
        let abs = |v: u64| {
            if (v as usize) < bias {
                bias + v as usize
            } else {
                v as usize
            }
        };
        let mut d = dynamic as *const Dyn;
        while (*d).tag != DT_NULL {
            let v = (*d).val;
            match (*d).tag {
                DT_STRTAB => o.strtab = abs(v),
                DT_SYMTAB => o.symtab = abs(v),
                DT_JMPREL => o.jmprel.0 = abs(v),
                DT_PLTRELSZ => o.jmprel.1 = v as usize,
                DT_RELA => o.rela.0 = abs(v),
                DT_RELASZ => o.rela.1 = v as usize,
                _ => {}
            }
            d = d.add(1);
        }
        (o.strtab != 0 && o.symtab != 0).then_some(o)
    }
}
