//! HMAC-SHA256, for the signatures paygate checks and makes.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256 of `parts`, in order, under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => Vec::new(),
    }
}
