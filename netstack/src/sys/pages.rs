//! `ZeroedBuf`: a byte buffer of anonymous pages straight from `mmap`, for the stack's large
//! buffers (the tap's receive buffer, the frame and batch buffers, the DNS arena). The kernel
//! maps a page in on its first touch, so a buffer costs memory only for what is used of it:
//! the eight 64 KiB batch buffers stay unmapped until UDP replies fill them, and a control
//! frame touches one page of its 64 KiB buffer.
//!
//! Why not `vec![0; n]`: that is `calloc`, which clears heap memory with `memset` unless the
//! chunk is freshly mapped, and whether it is depends on glibc's heap state (its mmap
//! threshold moves at run time). Measured on a start-up of `rootless-run -- true`: the memset
//! of the batch and control buffers was 4.8% of all the CPU the launch took, with every page
//! of them resident from the start. Should `mmap` fail, the buffer falls back to the heap.

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// A zero-filled byte buffer whose pages are mapped on first touch.
pub struct ZeroedBuf(Inner);

enum Inner {
    /// `len` bytes of a private anonymous mapping at `ptr`, unmapped on drop.
    Mapped { ptr: NonNull<u8>, len: usize },
    /// The fallback, and the empty buffer.
    Heap(Box<[u8]>),
}

// SAFETY: the mapping is owned by this value alone (no other pointer to it exists), so moving
// it to another thread is as safe as moving a Box<[u8]>.
unsafe impl Send for ZeroedBuf {}

impl ZeroedBuf {
    /// `len` zero bytes.
    pub fn new(len: usize) -> ZeroedBuf {
        if len == 0 {
            return ZeroedBuf(Inner::Heap(Box::default()));
        }
        // SAFETY: a fresh private anonymous mapping with no address hint touches no existing
        // memory; the result is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        match NonNull::new(ptr.cast::<u8>()) {
            Some(ptr) if ptr.as_ptr().cast() != libc::MAP_FAILED => {
                ZeroedBuf(Inner::Mapped { ptr, len })
            }
            _ => {
                tracing::debug!(len, "mmap failed: buffer on the heap");
                ZeroedBuf(Inner::Heap(vec![0; len].into_boxed_slice()))
            }
        }
    }
}

impl Deref for ZeroedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            // SAFETY: `ptr` maps `len` readable bytes (zero until written) for as long as self
            // lives, and `&self` rules out a live `&mut` to them.
            Inner::Mapped { ptr, len } => unsafe { std::slice::from_raw_parts(ptr.as_ptr(), *len) },
            Inner::Heap(b) => b,
        }
    }
}

impl DerefMut for ZeroedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.0 {
            // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
            Inner::Mapped { ptr, len } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *len)
            },
            Inner::Heap(b) => b,
        }
    }
}

impl Drop for ZeroedBuf {
    fn drop(&mut self) {
        if let Inner::Mapped { ptr, len } = self.0 {
            // SAFETY: unmaps exactly the mapping `new` made; no reference to it outlives self.
            unsafe {
                libc::munmap(ptr.as_ptr().cast(), len);
            }
        }
    }
}

impl Default for ZeroedBuf {
    /// The empty buffer.
    fn default() -> ZeroedBuf {
        ZeroedBuf::new(0)
    }
}

impl std::fmt::Debug for ZeroedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroedBuf")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::ZeroedBuf;

    #[test]
    fn starts_zeroed_and_keeps_writes() {
        let mut b = ZeroedBuf::new(3 * 4096 + 5);
        assert_eq!(b.len(), 3 * 4096 + 5);
        assert!(b.iter().all(|&x| x == 0));
        b[4096 * 3 + 4] = 7;
        assert_eq!(b[4096 * 3 + 4], 7);
        assert!(ZeroedBuf::new(0).is_empty());
    }

    #[test]
    fn untouched_pages_are_not_resident() {
        let b = ZeroedBuf::new(64 * 4096);
        let pages = resident_pages(&b);
        assert_eq!(pages, 0, "no page of a fresh buffer is mapped in");
        drop(b);
    }

    /// Pages of `b` resident now (mincore).
    fn resident_pages(b: &[u8]) -> usize {
        let mut vec = vec![0u8; b.len().div_ceil(4096)];
        // SAFETY: test-only: `b` is a page-aligned mapping of that many pages (ZeroedBuf::new
        // of a size above zero maps at a page boundary); `vec` has one byte per page.
        let rc = unsafe { libc::mincore(b.as_ptr() as *mut _, b.len(), vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore");
        vec.iter().filter(|&&v| v & 1 == 1).count()
    }
}
