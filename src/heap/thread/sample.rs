//! The heap's side of the sampling profiler (`crate::profile`): a per-thread byte countdown
//! and the sampled blocks.
//!
//! Every allocation takes its size off its heap's countdown (`Heap::sample_left`: one `sub`
//! and one branch on the paths that hand out a block). When it goes below zero the allocation
//! is *sampled*: the countdown is drawn again, from an exponential distribution of mean
//! [`RATE`] bytes (a Poisson process over the bytes allocated, as tcmalloc's and jemalloc's
//! samplers), and the block is served by the large path, whose descriptor is marked
//! [`SAMPLED`]. Large descriptors never carry a heap's tag, so ordinary frees never meet a
//! sampled block on their fast path: a sampled block is recognised on the large path, which
//! tells the profiler ([`forget`]). A sampled block costs a page of memory and a mapping (kept
//! mappings serve most of them); with the default rate that is under 1% of the live bytes.
//!
//! While sampling is off the countdown is re-armed with [`DORMANT`] bytes, so a thread notices
//! a profiler started later within that many bytes of allocation, without any write to
//! another thread's heap.
//!
//! What is done with a sample (its stack, its tables) is the profiler's: it registers
//! [`Hooks`] here. Uses: the heap (large blocks, the heap's generator), the platform.

use super::*;

/// Mean bytes between samples; 0: sampling is off.
pub static RATE: AtomicUsize = AtomicUsize::new(0);
/// The countdown while sampling is off.
pub const DORMANT: isize = 64 << 20;
/// `Pool::class` of a large descriptor that holds a sampled block.
pub const SAMPLED: u8 = 1;

/// What the profiler does with samples. `record` is called with the block, the requested
/// size and the domain once the block is ready; `forget` before a sampled block is freed or
/// moved. Neither is called while this thread is already inside one (an allocation the
/// profiler makes itself is not sampled).
pub struct Hooks {
    pub record: unsafe fn(p: *mut u8, size: usize, d: usize),
    pub forget: unsafe fn(p: *mut u8, d: usize),
}

static HOOKS: AtomicPtr<Hooks> = AtomicPtr::new(ptr::null_mut());

crate::platform::tls::tls_word!(in_profiler_flag, "pyalloc_tls_in_profiler");

/// Register the profiler's hooks (once; later calls replace them).
pub fn set_hooks(h: &'static Hooks) {
    HOOKS.store(h as *const Hooks as *mut Hooks, Ordering::Release);
}

/// Run `f` as a profiler hook: allocations made meanwhile by this thread are not sampled, and
/// no hook runs again inside it. Returns None when the thread already is inside one.
pub fn enter<R>(f: impl FnOnce() -> R) -> Option<R> {
    if in_profiler_flag::get() != 0 {
        return None;
    }
    in_profiler_flag::set(1);
    let r = f();
    in_profiler_flag::set(0);
    Some(r)
}

/// The countdown's next value: exponentially distributed with mean `rate` (at least 1), or
/// [`DORMANT`] when sampling is off.
///
/// # Safety
/// The calling thread owns `heap`.
pub(crate) unsafe fn next_interval(heap: *mut Heap, rate: usize) -> isize {
    if rate == 0 {
        return DORMANT;
    }
    // SAFETY: as stated.
    let r = unsafe { next_random(heap) };
    // A uniform draw in (0, 1]: 53 bits, never 0.
    let u = ((r >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
    let x = -ln(u) * rate as f64;
    (x as isize).clamp(1, isize::MAX / 2)
}

/// Arm a heap's countdown (at attach).
///
/// # Safety
/// The calling thread owns `heap`.
pub(crate) unsafe fn arm(heap: *mut Heap) {
    // SAFETY: as stated.
    unsafe { (*heap).sample_left = next_interval(heap, RATE.load(Ordering::Relaxed)) };
}

/// Set the calling thread's countdown afresh (after the rate changed: other threads pick the
/// new rate up when their countdown next runs out).
pub fn rearm_this_thread() {
    let heap = tls::get();
    if heap != empty_heap() {
        // SAFETY: this thread's heap.
        unsafe { arm(heap) };
    }
}

/// Take `size` bytes off the countdown of `heap`; true when the allocation is to be sampled.
///
/// # Safety
/// `heap` is this thread's heap (never the empty one).
#[inline(always)]
pub(crate) unsafe fn tick(heap: *mut Heap, size: usize) -> bool {
    // SAFETY: as stated.
    unsafe {
        (*heap).sample_left -= size as isize;
        (*heap).sample_left < 0
    }
}

/// The countdown ran out on an allocation of `size` bytes in domain `d`: draw the next
/// interval and, when sampling is on, serve the block as a sampled one (null: serve it the
/// ordinary way, when sampling is off or the large path failed).
///
/// # Safety
/// `heap` is this thread's heap (never the empty one).
#[cold]
#[inline(never)]
pub(crate) unsafe fn sampled(heap: *mut Heap, d: usize, size: usize, zero: bool) -> *mut u8 {
    // SAFETY: as stated.
    if !unsafe { redraw(heap) } {
        return ptr::null_mut();
    }
    let (p, usable) = large::alloc(d, size, zero);
    if p.is_null() {
        return p;
    }
    // SAFETY: `p` is a fresh large block: its descriptor is ours until it is handed out.
    unsafe {
        counts::count_large_alloc(heap, d, usable);
        mark(pagemap::lookup(p as usize), p, size, d);
    }
    p
}

/// The countdown ran out: draw the next interval. Whether the allocation is to be sampled
/// (sampling is on, and this thread is not inside the profiler).
///
/// # Safety
/// `heap` is this thread's heap (never the empty one).
unsafe fn redraw(heap: *mut Heap) -> bool {
    let rate = RATE.load(Ordering::Relaxed);
    // SAFETY: as stated.
    unsafe { (*heap).sample_left = next_interval(heap, rate) };
    rate != 0 && in_profiler_flag::get() == 0
}

/// Mark the large block `p` (descriptor `desc`, `size` bytes asked, domain `d`) sampled and
/// tell the profiler.
///
/// # Safety
/// `desc` is the live large descriptor of `p`, which the caller holds.
unsafe fn mark(desc: *mut Pool, p: *mut u8, size: usize, d: usize) {
    // SAFETY: as stated.
    unsafe { (*desc).class = SAMPLED };
    let hooks = HOOKS.load(Ordering::Acquire);
    if !hooks.is_null() {
        // `redraw` checked that this thread is not inside the profiler, so this runs.
        // SAFETY: registered hooks are 'static.
        enter(|| unsafe { ((*hooks).record)(p, size, d) });
    }
}

/// A sampled block `p` of domain `d` is about to be freed (or moved). Inside a hook, which
/// never frees a sampled block of its own, nothing is done: the record stays, and is replaced
/// when its address is sampled again.
pub(crate) fn forget(p: *mut u8, d: usize) {
    let hooks = HOOKS.load(Ordering::Acquire);
    if !hooks.is_null() {
        // SAFETY: registered hooks are 'static.
        enter(|| unsafe { ((*hooks).forget)(p, d) });
    }
}

/// A large block grew or shrank in place (or moved its pages) from `p` to `q`, now `n` bytes:
/// it counts as an allocation of `n` bytes, sampled or not afresh. A buffer that grows by
/// `realloc` from one large size to the next would otherwise only ever be counted at its first
/// size (CPython's lists and bytearrays grow so).
///
/// # Safety
/// `desc` is the live large descriptor of the block, which the caller holds.
pub(crate) unsafe fn after_large_realloc(
    desc: *mut Pool,
    p: *mut u8,
    q: *mut u8,
    n: usize,
    d: usize,
) {
    // SAFETY: as stated.
    unsafe {
        if is_sampled(desc) {
            (*desc).class = 0;
            forget(p, d);
        }
        let heap = tls::get();
        if heap != empty_heap() && tick(heap, n) && redraw(heap) {
            mark(desc, q, n, d);
        }
    }
}

/// Whether the large descriptor `desc` holds a sampled block.
///
/// # Safety
/// `desc` is a live large descriptor.
#[inline]
pub(crate) unsafe fn is_sampled(desc: *mut Pool) -> bool {
    // SAFETY: as stated.
    unsafe { (*desc).class == SAMPLED }
}

/// The natural logarithm of `x` > 0, without libm: `x = m 2^e` with `m` in [sqrt(1/2),
/// sqrt(2)), and `ln m = 2 atanh((m-1)/(m+1))` by its series (|z| < 0.172: 9 terms give
/// 1e-15).
pub fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if m > core::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let mut term = z;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 19.0 {
        sum += term / k;
        term *= z2;
        k += 2.0;
    }
    2.0 * sum + e as f64 * core::f64::consts::LN_2
}

/// `1 - exp(-x)` for `x` >= 0, without libm (accurate for small `x` too).
pub fn one_minus_exp_neg(x: f64) -> f64 {
    if x < 0.5 {
        // Series: x - x^2/2 + x^3/6 - ...
        let (mut term, mut sum, mut k) = (x, 0.0, 1.0);
        while k < 20.0 {
            sum += term;
            k += 1.0;
            term *= -x / k;
        }
        return sum;
    }
    if x > 40.0 {
        return 1.0;
    }
    // exp(-x) = 2^-n exp(-r), r in [0, ln 2).
    let n = (x / core::f64::consts::LN_2) as i64;
    let r = x - n as f64 * core::f64::consts::LN_2;
    let (mut term, mut sum, mut k) = (1.0, 0.0, 0.0);
    while k < 20.0 {
        sum += term;
        k += 1.0;
        term *= -r / k;
    }
    1.0 - sum * f64::from_bits(((1023 - n) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logarithm_and_exponential_match_std() {
        for &x in &[1e-300, 1e-9, 0.001, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 10.0, 1e9] {
            assert!(
                (ln(x) - x.ln()).abs() <= 1e-12 * x.ln().abs().max(1.0),
                "ln {x}"
            );
        }
        for &x in &[
            0.0f64, 1e-9, 0.01, 0.49, 0.5, 0.9, 1.0, 3.0, 12.5, 39.0, 50.0,
        ] {
            let want = -(-x).exp_m1();
            let got = one_minus_exp_neg(x);
            assert!(
                (got - want).abs() <= 1e-12 * want.max(1e-300),
                "x {x}: {got} {want}"
            );
        }
    }
}
