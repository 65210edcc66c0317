//! A hint to the processor to bring bytes into the cache ahead of use.

/// Asks for the cache line holding `bytes[at]` (if there is one) without
/// waiting for it. Unlike a load, a prefetch never stalls the instructions
/// after it, and it has no effect a program can observe but speed.
#[inline(always)]
pub(crate) fn prefetch(bytes: &[u8], at: usize) {
    let Some(byte) = bytes.get(at) else { return };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and cannot fault,
    // whatever the address; this one is moreover inside `bytes`. (It needs
    // SSE, which every x86_64 processor has; from Rust 1.87 on the call is
    // safe, hence `unused_unsafe` on newer compilers.)
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(byte).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = byte;
}
