//! How bytes are copied into shared memory.
//!
//! A body copied into a region is read next by another process, usually on
//! another core, and a large one does not fit in this core's caches anyway.
//! An ordinary copy first reads every destination line into the cache (to
//! own it), then writes it back to memory: a third of its memory traffic is
//! that read. Above [`STREAM_THRESHOLD`] bytes this module copies with
//! non-temporal (streaming) stores, which write whole lines straight to
//! memory without reading them first and without evicting the caller's
//! working set. Measured on the project's 2-vCPU machine (`ipc2_bench
//! pool-hot blob-copy`, three rounds each), 16 MiB echoes went from 263-275
//! to 432-512 a second, 64 MiB ones from 52-70 to 80-109, and 4 MiB ones
//! from 1,148-1,578 to 1,829-2,244 (glibc's `memcpy` streams only above
//! 240 MiB there). Smaller bodies stay in the cache the peer reads them
//! from, so they are copied the ordinary way.
//!
//! Streaming stores exist on every x86-64 CPU (they are part of SSE2, which
//! the architecture guarantees); elsewhere the ordinary copy is used.

/// Bodies at least this large are copied with streaming stores: several
/// times a core's L2 cache, so that a body this large would not have stayed
/// in cache for its reader anyway.
pub(crate) const STREAM_THRESHOLD: usize = 4 << 20;

/// Copies `src` into `dst`, which must be as long.
pub(crate) fn copy_into(dst: &mut [u8], src: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    if src.len() >= STREAM_THRESHOLD && dst.len() == src.len() {
        stream::copy(dst, src);
        return;
    }
    dst.copy_from_slice(src);
}

#[cfg(target_arch = "x86_64")]
mod stream {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};

    /// Bytes moved per loop turn: four 16-byte stores, one cache line.
    const LINE: usize = 64;

    /// Copies `src` into `dst` (of equal length) with streaming stores.
    pub(super) fn copy(dst: &mut [u8], src: &[u8]) {
        // Streaming stores need a 16-byte aligned destination: copy the
        // bytes before the first aligned address, and the tail after the
        // last whole line, the ordinary way.
        let head = dst.as_ptr().align_offset(16).min(dst.len());
        let (dst_head, dst_rest) = dst.split_at_mut(head);
        let (src_head, src_rest) = src.split_at(head);
        dst_head.copy_from_slice(src_head);
        let lines = dst_rest.len() / LINE;
        let (dst_lines, dst_tail) = dst_rest.split_at_mut(lines * LINE);
        let (src_lines, src_tail) = src_rest.split_at(lines * LINE);
        for (to, from) in dst_lines
            .chunks_exact_mut(LINE)
            .zip(src_lines.chunks_exact(LINE))
        {
            // SAFETY: `to` and `from` are 64 bytes each (exact chunks), so
            // the four 16-byte loads and stores stay inside them; `to`
            // starts 16-byte aligned (it is `head` bytes past an aligned
            // address, plus whole lines), as `_mm_stream_si128` requires;
            // unaligned loads have no alignment requirement; SSE2 is part
            // of every x86-64 target.
            unsafe {
                let from = from.as_ptr().cast::<__m128i>();
                let to = to.as_mut_ptr().cast::<__m128i>();
                let a = _mm_loadu_si128(from);
                let b = _mm_loadu_si128(from.add(1));
                let c = _mm_loadu_si128(from.add(2));
                let d = _mm_loadu_si128(from.add(3));
                _mm_stream_si128(to, a);
                _mm_stream_si128(to.add(1), b);
                _mm_stream_si128(to.add(2), c);
                _mm_stream_si128(to.add(3), d);
            }
        }
        // Streaming stores are weakly ordered: fence them before the body
        // is published (its handle is written after this returns).
        // SAFETY: a fence has no preconditions.
        unsafe { _mm_sfence() };
        dst_tail.copy_from_slice(src_tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_byte_whatever_the_alignment_and_length() {
        let src: Vec<u8> = (0..STREAM_THRESHOLD + 200)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        for (skew, len) in [
            (0, STREAM_THRESHOLD),
            (1, STREAM_THRESHOLD + 63),
            (15, STREAM_THRESHOLD + 17),
            (3, 100),
            (0, 0),
        ] {
            let mut dst = vec![0u8; len + skew];
            copy_into(&mut dst[skew..], &src[skew..skew + len]);
            assert!(
                dst[skew..] == src[skew..skew + len],
                "skew {skew}, len {len}"
            );
            assert!(dst[..skew].iter().all(|&b| b == 0));
        }
    }
}
