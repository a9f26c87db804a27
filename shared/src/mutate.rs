//! Seeded mutations of valid inputs, for the tests that prove a parser of outside input never
//! panics: a few bytes overwritten, removed or inserted (structural JSON bytes mostly), so most
//! mutants stay close enough to valid to reach the parser's deeper paths.

/// Bytes inserted by [`mutant`]: JSON's structure and the separators of keyward's text formats.
pub const PIECES: &[u8] = b"{}[]\":,#\n*";

/// `seed` with one to seven random edits.
pub fn mutant(rng: &mut fastrand::Rng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..rng.usize(1..8) {
        let at = rng
            .usize(0..bytes.len().max(1))
            .min(bytes.len().saturating_sub(1));
        match rng.u8(0..3) {
            0 if !bytes.is_empty() => bytes[at] = rng.u8(..),
            1 if !bytes.is_empty() => {
                bytes.remove(at);
            }
            _ => bytes.insert(at.min(bytes.len()), PIECES[rng.usize(0..PIECES.len())]),
        }
    }
    bytes
}
