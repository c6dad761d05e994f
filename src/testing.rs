//! Helpers the unit tests of several modules share.

use bytes::BytesMut;

/// Feeds `input` to `next` as a stream would bring it, in pieces cut at
/// `cuts` (taken modulo its length), then at EOF; returns all it produced.
pub(crate) fn feed_in_pieces<T>(
    input: &[u8],
    cuts: &[usize],
    mut next: impl FnMut(&mut BytesMut, bool) -> Option<T>,
) -> Vec<T> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let (mut buf, mut out, mut start) = (BytesMut::new(), Vec::new(), 0);
    for cut in cuts.into_iter().chain([input.len()]) {
        buf.extend_from_slice(&input[start..cut]);
        start = cut;
        while let Some(item) = next(&mut buf, false) {
            out.push(item);
        }
    }
    while let Some(item) = next(&mut buf, true) {
        out.push(item);
    }
    out
}
