//! `commit`: an image from a container, its image's layers plus one layer of the container's
//! changes (see [`write_overlay_layer`](crate::write_overlay_layer)).

use std::io::{self, Read};

use berth_reference::{Digest, Reference};

use crate::{
    Extension, Store,
    config::{History, RunConfig},
    error::Result,
    extend::Registration,
    meta::ImageRecord,
};

/// What the new image says about itself.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The new image's container defaults (the engine fills it from the container, plus
    /// `--change`).
    pub config: RunConfig,
    /// `-a`: the config's and the history entry's author.
    pub author: Option<String>,
    /// `-m`: the config's and the history entry's comment.
    pub comment: Option<String>,
    /// The history entry's `created_by` (Docker puts the container's command here).
    pub created_by: Option<String>,
    /// Kept as the config's `container` (Docker's extra field).
    pub container_id: Option<String>,
    /// Tag to give the image.
    pub tag: Option<Reference>,
}

/// An empty tar archive: the two zero blocks that end one. Docker's empty layer is this.
const EMPTY_TAR: [u8; 1024] = [0; 1024];

impl Store {
    /// A new image: `parent`'s layers plus the layer tar read from `layer` (uncompressed),
    /// with `opts`' config, a history entry appended to the parent's. The layer is always
    /// added, even when empty, as Docker does; an empty stream stands for an empty tar
    /// (1024 zero bytes), so the layer blob is a valid archive. Architecture, OS and variant
    /// are the parent's. On failure, what was added is collected again.
    pub fn commit(
        &mut self,
        parent: &Digest,
        layer: impl Read + Send,
        opts: CommitOptions,
    ) -> Result<ImageRecord> {
        let result = self.commit_locked(parent, layer, opts);
        self.clean_after_failure(&result);
        result
    }

    fn commit_locked(
        &mut self,
        parent: &Digest,
        layer: impl Read + Send,
        opts: CommitOptions,
    ) -> Result<ImageRecord> {
        let mut extra = serde_json::Map::new();
        if let Some(id) = &opts.container_id {
            extra.insert("container".into(), id.clone().into());
        }
        // Docker's image config carries the commit message as `comment` (`inspect`'s
        // `.Comment`), besides the history entry.
        if let Some(comment) = &opts.comment {
            extra.insert("comment".into(), comment.clone().into());
        }
        let now = jiff::Timestamp::now().to_string();
        let ext = Extension {
            parent: Some(parent),
            layer: Some(Box::new(EmptyAsTar::new(layer))),
            config: opts.config,
            history: vec![History {
                created: Some(now.clone()),
                created_by: opts.created_by,
                author: opts.author.clone(),
                comment: opts.comment,
                empty_layer: false,
            }],
            author: opts.author,
            created: now,
        };
        let how = Registration {
            intermediate: false,
            tags: opts.tag.into_iter().collect(),
            extra,
            layer_label: "from the container",
        };
        self.assemble(ext, &how)
    }
}

/// Reads `inner`, or an empty tar archive if `inner` is empty.
struct EmptyAsTar<R> {
    inner: R,
    /// Bytes of [`EMPTY_TAR`] handed out, once `inner` turned out empty.
    substitute: Option<usize>,
    started: bool,
}

impl<R> EmptyAsTar<R> {
    fn new(inner: R) -> Self {
        EmptyAsTar {
            inner,
            substitute: None,
            started: false,
        }
    }
}

impl<R: Read> Read for EmptyAsTar<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(done) = &mut self.substitute {
            let n = buf.len().min(EMPTY_TAR.len() - *done);
            buf[..n].copy_from_slice(&EMPTY_TAR[*done..*done + n]);
            *done += n;
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !self.started && !buf.is_empty() {
            self.substitute = Some(0);
            return self.read(buf);
        }
        self.started |= n > 0;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImportOptions, StoreError, image::from_oci_digest, overlay::write_overlay_layer};
    use rustix::fs::FileType;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    /// A tar of regular files.
    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(1_600_000_000);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn store_with_base() -> (tempfile::TempDir, Store, ImageRecord) {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Store::open(&tmp.path().join("root")).unwrap();
        let base = tar_of(&[("etc/passwd", b"root:x:0:0"), ("etc/group", b"root:x:0")]);
        let opts = ImportOptions {
            source: "-".into(),
            tag: Some(Reference::parse_with_default_tag("base:1").unwrap()),
            architecture: Some("arm64".into()),
            ..Default::default()
        };
        let rec = store.import(&base[..], opts).unwrap();
        (tmp, store, rec)
    }

    /// The store's blobs and layers, to see that a failure leaves nothing behind.
    fn contents(store: &Store) -> (Vec<Digest>, Vec<Digest>, usize) {
        let mut blobs = store.blobs.list().unwrap();
        blobs.sort();
        let mut layers = store.layers.list().unwrap();
        layers.sort();
        (blobs, layers, store.images().unwrap().len())
    }

    #[test]
    fn commit_adds_one_layer_of_the_changes() {
        let (tmp, mut store, base) = store_with_base();
        let base_image = store.image(base.clone()).unwrap();
        let base_chain = base_image.chain_ids().unwrap();

        // A container's upper directory over the base: passwd edited, group deleted, a
        // new file, and the runtime's hostname mount target.
        let upper = tmp.path().join("upper");
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/passwd"), b"root:x:0:0\nu:x:1:1").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            upper.join("etc/group"),
            FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        fs::write(upper.join("etc/hostname"), b"").unwrap();
        fs::create_dir_all(upper.join("srv")).unwrap();
        fs::write(upper.join("srv/new"), b"new").unwrap();
        let lowers: Vec<PathBuf> = base_chain
            .iter()
            .rev()
            .map(|c| store.layer_dir(c))
            .collect();
        let mut layer = Vec::new();
        write_overlay_layer(&upper, &lowers, &["etc/hostname"], &mut layer).unwrap();

        let mut config = RunConfig {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        };
        config.extra.insert("Hostname".into(), "abc".into());
        let opts = CommitOptions {
            config: config.clone(),
            author: Some("Ann <ann@example.com>".into()),
            comment: Some("edited passwd".into()),
            created_by: Some("/bin/sh -c edit".into()),
            container_id: Some("c0ffee".into()),
            tag: Some(Reference::parse_with_default_tag("derived:2").unwrap()),
        };
        let rec = store.commit(&base.id, &layer[..], opts).unwrap();
        assert_eq!(
            rec.tags,
            [Reference::parse_with_default_tag("derived:2").unwrap()]
        );
        assert_eq!(store.resolve("derived:2").unwrap().id, rec.id);

        let image = store.image(rec.clone()).unwrap();
        let c = &image.config;
        assert_eq!(c.rootfs.diff_ids.len(), 2);
        assert_eq!(c.rootfs.diff_ids[0], base_image.config.rootfs.diff_ids[0]);
        assert_eq!(c.architecture, "arm64");
        assert_eq!(c.os, "linux");
        assert_eq!(c.author.as_deref(), Some("Ann <ann@example.com>"));
        assert_eq!(c.config.as_ref(), Some(&config));
        assert_eq!(c.extra.get("container"), Some(&"c0ffee".into()));
        assert_eq!(c.history.len(), 2);
        assert_eq!(c.history[0], base_image.config.history[0]);
        let h = &c.history[1];
        assert_eq!(h.author.as_deref(), Some("Ann <ann@example.com>"));
        assert_eq!(h.comment.as_deref(), Some("edited passwd"));
        assert_eq!(h.created_by.as_deref(), Some("/bin/sh -c edit"));
        assert!(!h.empty_layer);
        assert_eq!(h.created, c.created);

        // The manifest keeps the parent's layer blob and adds ours.
        let layers = image.manifest.layers();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0], base_image.manifest.layers()[0]);
        let ours = from_oci_digest(layers[1].digest()).unwrap();
        assert_eq!(store.blobs.read(&ours).unwrap(), layer);
        assert_eq!(layers[1].size(), layer.len() as u64);

        // The new layer holds the changes, whiteout included.
        let chains = image.chain_ids().unwrap();
        assert_eq!(chains[0], base_chain[0]);
        let info = store.layer(&chains[1]).unwrap().unwrap();
        assert_eq!(info.parent.as_ref(), Some(&base_chain[0]));
        let dir = store.layer_dir(&chains[1]);
        assert_eq!(
            fs::read(dir.join("etc/passwd")).unwrap(),
            b"root:x:0:0\nu:x:1:1"
        );
        assert_eq!(fs::read(dir.join("srv/new")).unwrap(), b"new");
        let md = dir.join("etc/group").symlink_metadata().unwrap();
        assert_eq!((md.mode() & 0o170000, md.rdev()), (0o020000, 0));
        assert!(!dir.join("etc/hostname").exists());
        assert_eq!(rec.size, base.size + "root:x:0:0\nu:x:1:1".len() as u64 + 3);

        let report = store.check().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.images, 2);
    }

    #[test]
    fn an_empty_commit_still_adds_a_layer() {
        let (_tmp, mut store, base) = store_with_base();
        for stream in [&b""[..], &EMPTY_TAR[..]] {
            let rec = store
                .commit(&base.id, stream, CommitOptions::default())
                .unwrap();
            let image = store.image(rec).unwrap();
            assert_eq!(image.config.rootfs.diff_ids.len(), 2);
            // Docker's empty layer.
            assert_eq!(
                image.config.rootfs.diff_ids[1],
                "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
            );
            assert!(image.config.extra.get("container").is_none());
        }
        let report = store.check().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        // A commit of a commit stacks.
        let first = store.resolve("base:1").unwrap();
        let second = store
            .commit(&first.id, &b""[..], CommitOptions::default())
            .unwrap();
        let third = store
            .commit(
                &second.id,
                &tar_of(&[("x", b"x")])[..],
                CommitOptions::default(),
            )
            .unwrap();
        let image = store.image(third).unwrap();
        assert_eq!(image.config.rootfs.diff_ids.len(), 3);
        assert_eq!(image.config.history.len(), 3);
        assert!(store.check().unwrap().problems.is_empty());
    }

    #[test]
    fn failures_leave_the_store_as_it_was() {
        let (_tmp, mut store, base) = store_with_base();
        let before = contents(&store);
        let missing = Digest::sha256_of(b"no such image");
        let err = store
            .commit(&missing, &b""[..], CommitOptions::default())
            .unwrap_err();
        assert!(matches!(err, StoreError::ImageNotFound(_)), "{err}");

        let mut bad = tar_of(&[("aa/escape", b"x")]);
        // The tar crate refuses to write "..", so patch the name in (and the checksum).
        bad[..9].copy_from_slice(b"../escape");
        let mut h = tar::Header::from_byte_slice(&bad[..512]).clone();
        h.set_cksum();
        bad[..512].copy_from_slice(h.as_bytes());
        let err = store
            .commit(&base.id, &bad[..], CommitOptions::default())
            .unwrap_err();
        assert!(matches!(err, StoreError::Unpack { .. }), "{err}");
        assert_eq!(contents(&store), before);
        let report = store.check().unwrap();
        assert_eq!((report.problems.len(), report.debris), (0, 0));
    }

    #[test]
    fn empty_as_tar() {
        let read = |r: &[u8]| {
            let mut out = Vec::new();
            EmptyAsTar::new(r).read_to_end(&mut out).unwrap();
            out
        };
        assert_eq!(read(b""), EMPTY_TAR);
        assert_eq!(read(b"abc"), b"abc");
    }
}
