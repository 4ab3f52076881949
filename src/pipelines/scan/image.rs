//! Image kinds accepted by the shelf scan: magic-byte detection and Content-Type mapping.

use serde::{Deserialize, Serialize};

/// The four image kinds the contract accepts and Gemini can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    Jpeg,
    Png,
    Webp,
    Heic,
}

impl ImageKind {
    pub const ALL: [ImageKind; 4] = [Self::Jpeg, Self::Png, Self::Webp, Self::Heic];

    /// The canonical media type, as sent to Gemini in `inline_data.mime_type`.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Heic => "image/heic",
        }
    }
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Brands that make an ISO-BMFF file a HEVC-coded HEIF image (or image sequence).
const HEVC_BRANDS: [&[u8; 4]; 6] = [b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"];
/// Generic HEIF structural brands. AVIF files carry them too, so on their own they only count
/// when no AV1 brand says the file is really an AVIF (which Gemini is not promised to read).
const GENERIC_HEIF_BRANDS: [&[u8; 4]; 2] = [b"mif1", b"msf1"];
const AV1_BRANDS: [&[u8; 4]; 2] = [b"avif", b"avis"];

/// An `ftyp` box lists a handful of brands in practice; the cap bounds the work on a box
/// that claims to be megabytes long.
const MAX_BRANDS: usize = 64;

/// Identifies the image kind from its leading bytes; `None` for anything else, including
/// empty or truncated headers.
pub fn detect(bytes: &[u8]) -> Option<ImageKind> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(ImageKind::Jpeg);
    }
    if bytes.starts_with(&PNG_SIGNATURE) {
        return Some(ImageKind::Png);
    }
    if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        return Some(ImageKind::Webp);
    }
    if is_heif(bytes) {
        return Some(ImageKind::Heic);
    }
    None
}

/// Reads the leading `ftyp` box of an ISO-BMFF file and decides from its brands whether it
/// is a HEIC/HEIF image. A box whose declared size does not fit the data, or whose brand list
/// is not whole, is malformed and not trusted.
fn is_heif(bytes: &[u8]) -> bool {
    if bytes.get(4..8) != Some(b"ftyp") {
        return false;
    }
    let Some(size32) = read_u32(bytes, 0) else {
        return false;
    };
    let (header_len, box_len) = match size32 {
        // Size 0 means "to the end of the file".
        0 => (8usize, bytes.len()),
        // Size 1 means a 64-bit size follows the type.
        1 => match read_u64(bytes, 8).and_then(|n| usize::try_from(n).ok()) {
            Some(n) => (16, n),
            None => return false,
        },
        n => match usize::try_from(n) {
            Ok(n) => (8, n),
            Err(_) => return false,
        },
    };
    // major_brand (4) + minor_version (4) must fit, and the box must fit the data.
    let brands_start = header_len + 8;
    if box_len < brands_start || box_len > bytes.len() {
        return false;
    }
    if !(box_len - brands_start).is_multiple_of(4) {
        return false;
    }
    let Some(major) = bytes.get(header_len..header_len + 4) else {
        return false;
    };
    let compatible = bytes
        .get(brands_start..box_len)
        .unwrap_or_default()
        .chunks_exact(4)
        .take(MAX_BRANDS);
    let brands = std::iter::once(major).chain(compatible);

    let mut hevc = false;
    let mut generic = false;
    let mut av1 = false;
    for brand in brands {
        hevc |= HEVC_BRANDS.iter().any(|b| b.as_slice() == brand);
        generic |= GENERIC_HEIF_BRANDS.iter().any(|b| b.as_slice() == brand);
        av1 |= AV1_BRANDS.iter().any(|b| b.as_slice() == brand);
    }
    hevc || (generic && !av1)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(raw))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let raw: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_be_bytes(raw))
}

/// Maps a declared media type (a whole `Content-Type` value, parameters allowed, any case)
/// to an image kind. `image/jpg` is not registered but common enough in clients to accept;
/// `image/heif` is the same container as `image/heic` as far as Gemini is concerned.
pub fn kind_from_media_type(mt: &str) -> Option<ImageKind> {
    let essence = mt.split(';').next().unwrap_or_default().trim();
    let kinds: [(&str, ImageKind); 6] = [
        ("image/jpeg", ImageKind::Jpeg),
        ("image/jpg", ImageKind::Jpeg),
        ("image/png", ImageKind::Png),
        ("image/webp", ImageKind::Webp),
        ("image/heic", ImageKind::Heic),
        ("image/heif", ImageKind::Heic),
    ];
    kinds
        .iter()
        .find(|(name, _)| essence.eq_ignore_ascii_case(name))
        .map(|(_, kind)| *kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `ftyp` box with the given major and compatible brands, followed by a `meta` stub.
    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let size = 16 + 4 * compatible.len();
        let mut out = (size as u32).to_be_bytes().to_vec();
        out.extend_from_slice(b"ftyp");
        out.extend_from_slice(major);
        out.extend_from_slice(&[0, 0, 0, 0]);
        for brand in compatible {
            out.extend_from_slice(*brand);
        }
        out.extend_from_slice(&[0, 0, 0, 8, b'm', b'e', b't', b'a']);
        out
    }

    #[test]
    fn detects_by_magic_bytes() {
        let mut webp = b"RIFF\x24\x00\x00\x00WEBPVP8 ".to_vec();
        webp.extend_from_slice(&[0; 16]);
        let mut large_size = vec![0, 0, 0, 1];
        large_size.extend_from_slice(b"ftyp");
        large_size.extend_from_slice(&24u64.to_be_bytes());
        large_size.extend_from_slice(b"mif1\0\0\0\0");

        let table: Vec<(&str, Vec<u8>, Option<ImageKind>)> = vec![
            (
                "jpeg jfif",
                b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00".to_vec(),
                Some(ImageKind::Jpeg),
            ),
            (
                "jpeg exif",
                b"\xFF\xD8\xFF\xE1\x00\x10Exif".to_vec(),
                Some(ImageKind::Jpeg),
            ),
            (
                "jpeg bare marker",
                b"\xFF\xD8\xFF".to_vec(),
                Some(ImageKind::Jpeg),
            ),
            (
                "png",
                b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec(),
                Some(ImageKind::Png),
            ),
            ("webp", webp, Some(ImageKind::Webp)),
            (
                "heic major",
                ftyp(b"heic", &[b"mif1", b"heic"]),
                Some(ImageKind::Heic),
            ),
            (
                "heic brand only in compatible",
                ftyp(b"XXXX", &[b"abcd", b"heix"]),
                Some(ImageKind::Heic),
            ),
            ("heif mif1 major", ftyp(b"mif1", &[]), Some(ImageKind::Heic)),
            (
                "heif sequence",
                ftyp(b"msf1", &[b"iso8"]),
                Some(ImageKind::Heic),
            ),
            ("heic 64-bit box size", large_size, Some(ImageKind::Heic)),
            (
                "mp4 isom",
                ftyp(b"isom", &[b"isom", b"iso2", b"avc1", b"mp41"]),
                None,
            ),
            ("quicktime", ftyp(b"qt  ", &[b"qt  "]), None),
            ("avif with mif1", ftyp(b"avif", &[b"mif1", b"miaf"]), None),
            (
                "avif listed second",
                ftyp(b"mif1", &[b"avif", b"miaf"]),
                None,
            ),
            ("jpeg truncated", b"\xFF\xD8".to_vec(), None),
            ("png truncated", b"\x89PNG\r\n\x1a".to_vec(), None),
            ("webp truncated", b"RIFF\x24\x00\x00\x00WEB".to_vec(), None),
            (
                "riff not webp",
                b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec(),
                None,
            ),
            ("gif", b"GIF89a\x01\x00\x01\x00".to_vec(), None),
            ("pdf", b"%PDF-1.7\n".to_vec(), None),
            (
                "random",
                vec![0x13, 0x37, 0xC0, 0xDE, 0x00, 0x42, 0x99],
                None,
            ),
            ("empty", Vec::new(), None),
            ("ftyp only", b"\x00\x00\x00\x10ftyp".to_vec(), None),
        ];
        for (name, bytes, want) in table {
            assert_eq!(detect(&bytes), want, "{name}");
        }
    }

    #[test]
    fn rejects_malformed_ftyp_boxes() {
        let mut too_long = ftyp(b"heic", &[]);
        too_long[3] = 0xFF; // claims 255 bytes, has 24
        let mut too_short = ftyp(b"heic", &[]);
        too_short[3] = 12; // no room for the minor version
        let mut ragged = ftyp(b"heic", &[b"mif1"]);
        ragged[3] = 22; // brand list not a whole number of brands
        let mut huge64 = vec![0, 0, 0, 1];
        huge64.extend_from_slice(b"ftyp");
        huge64.extend_from_slice(&u64::MAX.to_be_bytes());
        huge64.extend_from_slice(b"heic\0\0\0\0");
        let mut to_end = ftyp(b"heic", &[]);
        to_end.truncate(16);
        to_end[3] = 0; // size 0: the box runs to the end of the data

        let table: Vec<(&str, Vec<u8>, Option<ImageKind>)> = vec![
            ("size beyond data", too_long, None),
            ("size below header", too_short, None),
            ("ragged brands", ragged, None),
            ("64-bit size overflow", huge64, None),
            ("size zero runs to end", to_end, Some(ImageKind::Heic)),
        ];
        for (name, bytes, want) in table {
            assert_eq!(detect(&bytes), want, "{name}");
        }
    }

    #[test]
    fn caps_the_brand_scan() {
        let filler: Vec<&[u8; 4]> = vec![b"zzzz"; MAX_BRANDS + 10];
        let mut late = filler.clone();
        late.push(b"heic");
        assert_eq!(detect(&ftyp(b"isom", &late)), None);
        let mut early = filler;
        early.insert(3, b"heic");
        assert_eq!(detect(&ftyp(b"isom", &early)), Some(ImageKind::Heic));
    }

    #[test]
    fn maps_media_types() {
        let table: &[(&str, Option<ImageKind>)] = &[
            ("image/jpeg", Some(ImageKind::Jpeg)),
            ("image/jpg", Some(ImageKind::Jpeg)),
            ("IMAGE/JPEG", Some(ImageKind::Jpeg)),
            (" image/jpeg ; charset=binary", Some(ImageKind::Jpeg)),
            ("image/png", Some(ImageKind::Png)),
            ("image/webp", Some(ImageKind::Webp)),
            ("image/heic", Some(ImageKind::Heic)),
            ("image/heif", Some(ImageKind::Heic)),
            ("image/gif", None),
            ("image/avif", None),
            ("image/heic-sequence", None),
            ("application/octet-stream", None),
            ("multipart/form-data; boundary=x", None),
            ("image/", None),
            ("", None),
        ];
        for (mt, want) in table {
            assert_eq!(kind_from_media_type(mt), *want, "{mt:?}");
        }
    }

    #[test]
    fn mime_round_trips_through_the_mapping() {
        for kind in ImageKind::ALL {
            assert_eq!(kind_from_media_type(kind.mime()), Some(kind));
        }
    }
}
