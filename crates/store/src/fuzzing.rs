//! Entry points for the fuzz targets (`fuzz/fuzz_targets/`): the store's parsers of outside
//! input, reachable without a store on disk.
//!
//! - [`LayerScratch::unpack`]: a layer blob (plain, gzip or zstd tar) unpacked as a pull or
//!   `load` does, or as `cp` into a container does; nothing may change outside the
//!   destination. [`largest_sparse_file`] tells the inputs that would only fill the disk.
//! - [`image_documents`]: manifests, indexes, configs and a Docker archive's
//!   `manifest.json`; what parses serializes and parses back to the same value.

use std::{
    fs,
    io::{self, BufReader, Read},
    os::{fd::AsFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use berth_reference::{Digest, Reference};
use oci_spec::image::{ImageIndex, ImageManifest};

use crate::{
    archive::{DockerArchiveEntry, clean_archive_path},
    compression::decompress,
    image::{chain_ids, check_layer_media_type, from_oci_digest, oci_digest, parse_config},
    unpack::{UnpackError, UnpackOptions, UnpackStats, unpack_into},
};

/// The most decompressed bytes one input may unpack: a few KiB of gzip or zstd can stand for
/// gigabytes, and writing them would measure the disk, not the extractor.
const MAX_TAR_BYTES: u64 = 16 << 20;

/// A directory to unpack fuzz inputs in, with entries beside the destination that no input
/// may change:
///
/// ```text
/// base/
///   root/          the destination, made afresh for each input, holding symlinks out:
///     up -> ../outside, abs -> base/outside, file -> ../outside-file
///   outside/       stays empty, its owner, mode and times unchanged
///   outside-file   stays as it is (size, links, owner, mode, times)
/// ```
///
/// The symlinks stand for what a container's tree may hold when `cp` extracts into it; the
/// extractor must replace them or refuse to go through them, never follow them.
pub struct LayerScratch {
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
    outside_file: PathBuf,
    before: [Fingerprint; 2],
    base_listing: Vec<String>,
}

/// What a change to an entry would alter (ctime covers chmod, chown and xattrs).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Fingerprint {
    fn of(path: &Path) -> io::Result<Fingerprint> {
        let md = fs::symlink_metadata(path)?;
        Ok(Fingerprint {
            ino: md.ino(),
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            nlink: md.nlink(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        })
    }
}

fn listing(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

impl LayerScratch {
    /// Makes `base` (which must not exist) with the sentinels beside the destination.
    pub fn new(base: &Path) -> io::Result<LayerScratch> {
        fs::create_dir(base)?;
        let outside = base.join("outside");
        let outside_file = base.join("outside-file");
        fs::create_dir(&outside)?;
        fs::write(&outside_file, b"not to be touched\n")?;
        let before = [Fingerprint::of(&outside)?, Fingerprint::of(&outside_file)?];
        // What the checks, made while the destination exists, must find.
        let mut base_listing = listing(base)?;
        base_listing.push("root".into());
        base_listing.sort();
        Ok(LayerScratch {
            root: base.join("root"),
            base_listing,
            base: base.to_path_buf(),
            outside,
            outside_file,
            before,
        })
    }

    /// Unpacks `data` (a tar, maybe gzip or zstd) into a fresh destination: as a layer
    /// (`layer`: whiteouts converted, owners kept) or as `cp` into a container (whiteouts
    /// are plain names, every entry owned by 0:0). Panics if anything outside the
    /// destination changed; the destination is removed afterwards.
    pub fn unpack(&self, data: &[u8], layer: bool) -> Result<UnpackStats, UnpackError> {
        fs::create_dir(&self.root).expect("make the destination");
        std::os::unix::fs::symlink("../outside", self.root.join("up")).expect("symlink up");
        std::os::unix::fs::symlink(&self.outside, self.root.join("abs")).expect("symlink abs");
        std::os::unix::fs::symlink("../outside-file", self.root.join("file"))
            .expect("symlink file");
        let result = self.unpack_into_root(data, layer);
        self.check_outside();
        fs::remove_dir_all(&self.root).expect("remove the destination");
        result
    }

    fn unpack_into_root(&self, data: &[u8], layer: bool) -> Result<UnpackStats, UnpackError> {
        let (_, tar) = decompress(BufReader::new(data)).map_err(|e| UnpackError::Io {
            op: "decompress",
            path: self.root.clone(),
            source: io::Error::other(e),
        })?;
        let opts = UnpackOptions {
            whiteouts: layer,
            owner: (!layer).then_some((0, 0)),
        };
        let dest = fs::File::open(&self.root).expect("open the destination");
        unpack_into(tar.take(MAX_TAR_BYTES), dest.as_fd(), &self.root, &opts)
    }

    fn check_outside(&self) {
        assert_eq!(
            listing(&self.base).expect("list the scratch directory"),
            self.base_listing,
            "an entry appeared or went beside the destination"
        );
        assert_eq!(
            listing(&self.outside).expect("list outside/"),
            Vec::<String>::new(),
            "an entry was written into outside/"
        );
        let now = [&self.outside, &self.outside_file].map(|p| Fingerprint::of(p).expect("stat"));
        assert_eq!(now, self.before, "an entry outside the destination changed");
    }
}

/// The largest size a GNU sparse entry of `data` (read as [`LayerScratch::unpack`] reads it)
/// claims. The extractor writes a sparse file's holes as zeros, as Docker and containerd do,
/// so a few KiB that claim an exabyte write zeros until the disk is full: the fuzz target
/// leaves such inputs out rather than fill the machine's disk.
pub fn largest_sparse_file(data: &[u8]) -> u64 {
    let Ok((_, tar)) = decompress(BufReader::new(data)) else {
        return 0;
    };
    let mut archive = tar::Archive::new(tar.take(MAX_TAR_BYTES));
    let Ok(entries) = archive.entries() else {
        return 0;
    };
    entries
        .map_while(Result::ok)
        .filter(|e| e.header().entry_type().is_gnu_sparse())
        .map(|e| e.size())
        .max()
        .unwrap_or(0)
}

impl Drop for LayerScratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// Every parser of image documents over `data`: as an image manifest, an index, an image
/// config and a Docker archive's `manifest.json`. Whatever parses must serialize and parse
/// back to the same value, and what `load` and `pull` then do with its digests, media types
/// and paths must not panic.
pub fn image_documents(data: &[u8]) {
    let digest = Digest::sha256_of(data);
    manifest(&digest, data);
    index(data);
    config(&digest, data);
    docker_archive_manifest(data);
    if let Ok(text) = std::str::from_utf8(data) {
        digests_cross(text);
    }
}

fn manifest(digest: &Digest, data: &[u8]) {
    let Ok(parsed) = crate::image::parse_manifest(digest, data) else {
        return;
    };
    let printed = serde_json::to_vec(&parsed).expect("a manifest serializes");
    let again = ImageManifest::from_reader(&printed[..]).expect("a printed manifest parses");
    assert_eq!(again, parsed, "manifest round trip");
    descriptor_digest(parsed.config().digest());
    for layer in parsed.layers() {
        let _ = check_layer_media_type(layer);
        descriptor_digest(layer.digest());
    }
}

fn index(data: &[u8]) {
    let Ok(parsed) = ImageIndex::from_reader(data) else {
        return;
    };
    let printed = serde_json::to_vec(&parsed).expect("an index serializes");
    let again = ImageIndex::from_reader(&printed[..]).expect("a printed index parses");
    assert_eq!(again, parsed, "index round trip");
    for m in parsed.manifests() {
        descriptor_digest(m.digest());
    }
}

/// A descriptor's digest as the store reads it: either refused or the same digest back.
fn descriptor_digest(d: &oci_spec::image::Digest) {
    if let Ok(ours) = from_oci_digest(d) {
        assert_eq!(
            &oci_digest(&ours),
            d,
            "digest {d} changed between the two types"
        );
    }
}

/// A digest berth accepts must convert to oci-spec's type (`oci_digest` expects it to).
fn digests_cross(text: &str) {
    if let Ok(d) = Digest::parse(text) {
        assert_eq!(oci_digest(&d).to_string(), text);
    }
}

fn config(digest: &Digest, data: &[u8]) {
    let Ok(parsed) = parse_config(digest, data) else {
        return;
    };
    let printed = serde_json::to_vec(&parsed).expect("a config serializes");
    let again = parse_config(digest, &printed).expect("a printed config parses");
    let json = |c: &crate::ImageConfig| serde_json::to_value(c).expect("a config serializes");
    assert!(
        same_json(&json(&again), &json(&parsed)),
        "config round trip: {again:?} from {parsed:?}"
    );
    if let Ok(chain) = chain_ids(&parsed) {
        assert_eq!(chain.len(), parsed.rootfs.diff_ids.len());
    }
    for h in &parsed.history {
        let _ = h.created_at();
    }
}

/// JSON equality where floats may differ in their last bits: serde_json parses floats
/// without correct rounding unless its `float_roundtrip` feature is on (berth's build leaves
/// it off), so a float in a config's unknown fields can move by an ULP when read again.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn docker_archive_manifest(data: &[u8]) {
    let Ok(entries) = serde_json::from_slice::<Vec<DockerArchiveEntry>>(data) else {
        return;
    };
    let printed = serde_json::to_value(&entries).expect("manifest.json serializes");
    let again: Vec<DockerArchiveEntry> =
        serde_json::from_value(printed.clone()).expect("a printed manifest.json parses");
    assert_eq!(
        serde_json::to_value(&again).expect("serializes"),
        printed,
        "manifest.json round trip"
    );
    // The paths and tags `load` follows, read from the printed form (the same fields).
    for entry in printed.as_array().into_iter().flatten() {
        let paths = entry["Layers"].as_array().into_iter().flatten();
        for path in paths.chain([&entry["Config"]]).filter_map(|p| p.as_str()) {
            let clean = clean_archive_path(path);
            assert!(
                clean.split('/').all(|c| !matches!(c, "." | "..")) && !clean.starts_with('/'),
                "{path:?} cleaned to {clean:?}"
            );
            assert_eq!(clean_archive_path(&clean), clean, "cleaning {path:?} twice");
        }
        for tag in entry["RepoTags"].as_array().into_iter().flatten() {
            let _ = tag.as_str().map(Reference::parse_with_default_tag);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tar::{EntryType, Header};

    use super::*;

    /// A tar of (kind, name, link target, data) entries, names written into the header as
    /// given (the tar crate's builder refuses `..`).
    fn tar_of(entries: &[(EntryType, &str, &str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (kind, name, target, data) in entries {
            let mut h = Header::new_gnu();
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..target.len()].copy_from_slice(target.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            h.set_size(data.len() as u64);
            h.set_cksum();
            builder.append(&h, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn scratch() -> (tempfile::TempDir, LayerScratch) {
        let tmp = tempfile::tempdir().unwrap();
        let scratch = LayerScratch::new(&tmp.path().join("scratch")).unwrap();
        (tmp, scratch)
    }

    #[test]
    fn layer_inputs_unpack_or_fail_without_touching_outside() {
        let (_tmp, scratch) = scratch();
        let valid = tar_of(&[
            (EntryType::Directory, "etc/", "", b""),
            (EntryType::Regular, "etc/hostname", "", b"box\n"),
            (EntryType::Symlink, "etc/alias", "hostname", b""),
            (EntryType::Regular, "etc/.wh.gone", "", b""),
        ]);
        for layer in [true, false] {
            let stats = scratch.unpack(&valid, layer).unwrap();
            assert_eq!((stats.entries, stats.bytes), (4, 4));
        }
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&valid).unwrap();
        assert!(scratch.unpack(&gzip.finish().unwrap(), true).is_ok());

        for escape in [
            tar_of(&[(EntryType::Regular, "../x", "", b"out")]),
            tar_of(&[(EntryType::Regular, "up/x", "", b"out")]),
            tar_of(&[(EntryType::Directory, "abs/d/", "", b"")]),
            tar_of(&[(EntryType::Symlink, "s", "../../x", b"")]),
            tar_of(&[(EntryType::Link, "h", "../outside-file", b"")]),
        ] {
            for layer in [true, false] {
                let e = scratch.unpack(&escape, layer).unwrap_err();
                assert!(matches!(e, UnpackError::Escape { .. }), "{e}");
            }
        }
        // A sparse file of 1 MiB that is all hole: 1.5 KiB of tar, 1 MiB written.
        let mut sparse = Header::new_gnu();
        sparse.set_path("holes").unwrap();
        sparse.set_entry_type(EntryType::GNUSparse);
        sparse.set_mode(0o644);
        sparse.set_size(0);
        let gnu = sparse.as_gnu_mut().unwrap();
        gnu.realsize = *b"00004000000\0";
        gnu.sparse[0].offset = *b"00004000000\0";
        gnu.sparse[0].numbytes = *b"00000000000\0";
        sparse.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&sparse, &b""[..]).unwrap();
        let sparse = builder.into_inner().unwrap();
        assert_eq!(largest_sparse_file(&sparse), 1 << 20);
        assert_eq!(scratch.unpack(&sparse, true).unwrap().bytes, 1 << 20);
        assert_eq!(largest_sparse_file(&valid), 0);

        // Replacing the symlink to the outside file replaces the link, not the file.
        let over = tar_of(&[(EntryType::Regular, "file", "", b"replaced")]);
        assert!(scratch.unpack(&over, false).is_ok());
        for garbage in [
            &b""[..],
            b"\x1f\x8b\x08garbage",
            b"BZh91AY&SY",
            &[7u8; 1024],
        ] {
            let _ = scratch.unpack(garbage, true);
        }
    }

    #[test]
    fn image_documents_round_trip() {
        let manifest = br#"{
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                "size": 2
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                "size": 2
            }]
        }"#;
        let config = br#"{
            "architecture": "amd64", "os": "linux",
            "config": { "Env": ["PATH=/bin"], "Cmd": ["sh"], "Tty": false },
            "rootfs": { "type": "layers", "diff_ids": [
                "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
            ] },
            "history": [{ "created": "2024-01-01T00:00:00Z", "created_by": "ADD x /" }],
            "container": "abc"
        }"#;
        let archive = br#"[{ "Config": "blobs/sha256/44136fa3",
            "RepoTags": ["busybox:latest"], "Layers": ["../a/./b.tar", "/c//d"] }]"#;
        let index = br#"{ "schemaVersion": 2, "manifests": [] }"#;
        for doc in [
            &manifest[..],
            config,
            archive,
            index,
            b"sha256:abc",
            b"{",
            b"\xff",
        ] {
            image_documents(doc);
        }
        // What fuzzing found: an integer too large for 64 bits reads as a float, and
        // serde_json's float parsing may move it by an ULP when printed and read again.
        image_documents(br#"{"rootfs":{"type":"layers"},"x":1005555555555559000000}"#);
        let digest = Digest::sha256_of(config);
        assert!(parse_config(&digest, config).is_ok());
        assert!(crate::image::parse_manifest(&digest, manifest).is_ok());
        assert_eq!(clean_archive_path("../a/./b.tar"), "a/b.tar");
    }
}
