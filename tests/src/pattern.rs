//! Deterministic pseudo-random payloads and their sha256 digests, shared by `rr-probe` (which
//! sends them from inside the sandbox) and by the tests (which compute the digest they expect).
//! Pure functions, no I/O; the generator is splitmix64, chosen for being tiny and well mixed.

use sha2::{Digest, Sha256};

/// Seed of the TCP echo payload; any fixed value works as long as both sides agree.
pub const TCP_SEED: u64 = 0x7272_2d74_6573_7473;

/// Seed of what host-side servers send into the sandbox, distinct from `TCP_SEED` so that an
/// echo of the sandbox's own bytes can never pass for it.
pub const HOST_SEED: u64 = 0x6873_742d_7365_6e64;

/// Size of the chunks in which payloads are generated and hashed.
pub const CHUNK: usize = 64 * 1024;

/// splitmix64 (Steele, Lea, Flood 2014; constants from the reference implementation).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf` with bytes `offset..offset + buf.len()` of the stream named by `seed`.
/// The same (seed, offset) always gives the same bytes, whatever the chunking.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut pos = offset;
    let mut rest = buf;
    while !rest.is_empty() {
        let word = splitmix64(seed.wrapping_add(pos / 8)).to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(rest.len());
        let (head, tail) = rest.split_at_mut(n);
        head.copy_from_slice(&word[start..start + n]);
        rest = tail;
        pos += n as u64;
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 (hex) of the first `len` bytes of the stream named by `seed`.
pub fn sha256_hex(seed: u64, len: u64) -> String {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < len {
        let n = CHUNK.min((len - done) as usize);
        fill(seed, done, &mut buf[..n]);
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_is_independent_of_chunking() {
        let mut whole = [0u8; 37];
        fill(7, 3, &mut whole);
        let mut parts = [0u8; 37];
        let (a, b) = parts.split_at_mut(5);
        fill(7, 3, a);
        fill(7, 8, b);
        assert_eq!(whole, parts);
    }

    #[test]
    fn different_seeds_give_different_streams() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        fill(1, 0, &mut a);
        fill(2, 0, &mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn sha256_of_empty_stream_is_the_empty_digest() {
        // sha256("") from FIPS 180-2 test vectors.
        assert_eq!(
            sha256_hex(TCP_SEED, 0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn sha256_covers_exactly_len_bytes() {
        let mut buf = [0u8; 10];
        fill(TCP_SEED, 0, &mut buf);
        assert_eq!(sha256_hex(TCP_SEED, 10), hex(&Sha256::digest(buf)));
        assert_ne!(sha256_hex(TCP_SEED, 10), sha256_hex(TCP_SEED, 11));
    }
}
