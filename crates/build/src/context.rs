//! A build context that arrives as one stream (`berth build -`, the Engine API's `/build`):
//! a tar archive, compressed or not, unpacked into a directory of its own that is removed
//! when the build is over; or a Dockerfile alone, with an empty context.

use std::{
    io::{BufRead, Read},
    path::{Path, PathBuf},
};

/// A context unpacked from a stream; its directory goes when this is dropped.
pub struct StreamedContext {
    dir: tempfile::TempDir,
    /// The Dockerfile, when the stream was a Dockerfile rather than an archive.
    pub dockerfile: Option<String>,
}

impl StreamedContext {
    /// The context directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The Dockerfile: the one the stream was, or `name` in the context (a path relative
    /// to it).
    pub fn read_dockerfile(&self, name: &str) -> Result<String, String> {
        if let Some(text) = &self.dockerfile {
            return Ok(text.clone());
        }
        self.read(name)
            .map_err(|e| format!("failed to read dockerfile {name} from the context: {e}"))
    }

    /// The context's `.dockerignore` (empty when it has none).
    pub fn dockerignore(&self) -> String {
        self.read(".dockerignore").unwrap_or_default()
    }

    /// A file of the context, its path and symlinks resolved inside the context: the
    /// names come from the client, and nothing outside the context is read.
    fn read(&self, name: &str) -> std::io::Result<String> {
        let root = std::fs::File::open(self.dir.path())?;
        let relative = Path::new(name.trim_start_matches('/'));
        let mut text = String::new();
        berth_store::open_file_in_root(std::os::fd::AsFd::as_fd(&root), relative)?
            .read_to_string(&mut text)?;
        Ok(text)
    }
}

/// Whether the first bytes of a stream start an archive (compressed, or a tar's `ustar`
/// magic) rather than a Dockerfile.
pub fn is_archive(head: &[u8]) -> bool {
    crate::is_compressed(head) || head.get(257..262) == Some(b"ustar")
}

/// Reads a context stream into a new directory under `ROOT/build/tmp`: an archive is
/// unpacked (nothing lands outside the directory; `.wh.` names are ordinary files), any
/// other text is taken as the Dockerfile of an empty context.
pub fn receive_context(root: &Path, input: impl Read + Send) -> Result<StreamedContext, String> {
    let tmp: PathBuf = root.join("build").join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("context-")
        .tempdir_in(&tmp)
        .map_err(|e| format!("create a context directory in {}: {e}", tmp.display()))?;
    let mut input = std::io::BufReader::with_capacity(1 << 20, input);
    // An archive shows itself in its first 512 bytes (a tar header's magic at 257).
    let mut head = Vec::with_capacity(512);
    while head.len() < 512 {
        let buf = input
            .fill_buf()
            .map_err(|e| format!("reading the context: {e}"))?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len().min(512 - head.len());
        head.extend_from_slice(&buf[..n]);
        input.consume(n);
    }
    let whole = std::io::Cursor::new(head.clone()).chain(input);
    if !is_archive(&head) {
        let mut text = String::new();
        std::io::BufReader::new(whole)
            .read_to_string(&mut text)
            .map_err(|e| format!("reading the Dockerfile: {e}"))?;
        return Ok(StreamedContext {
            dir,
            dockerfile: Some(text),
        });
    }
    let tar = crate::decompressed(std::io::BufReader::new(whole)).map_err(|e| e.to_string())?;
    let opened = std::fs::File::open(dir.path()).map_err(|e| e.to_string())?;
    let opts = berth_store::UnpackOptions {
        whiteouts: false,
        owner: None,
    };
    berth_store::unpack_into(tar, std::os::fd::AsFd::as_fd(&opened), dir.path(), &opts)
        .map_err(|e| format!("unpacking the context: {e}"))?;
    Ok(StreamedContext {
        dir,
        dockerfile: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, text) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, text.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn archives_unpack_and_text_is_a_dockerfile() {
        let root = tempfile::tempdir().unwrap();
        let tar = tar_of(&[("Dockerfile", "FROM busybox\n"), ("sub/a.txt", "a")]);
        let context = receive_context(root.path(), &tar[..]).unwrap();
        assert_eq!(
            context.read_dockerfile("Dockerfile").unwrap(),
            "FROM busybox\n"
        );
        assert_eq!(
            std::fs::read_to_string(context.path().join("sub/a.txt")).unwrap(),
            "a"
        );
        assert!(context.read_dockerfile("../etc/passwd").is_err());
        std::os::unix::fs::symlink("/etc/hostname", context.path().join("Escape")).unwrap();
        assert!(
            context.read_dockerfile("Escape").is_err(),
            "a symlink is resolved inside the context"
        );
        assert_eq!(context.dockerignore(), "");
        assert!(context.read_dockerfile("Missing").is_err());
        let dir = context.path().to_path_buf();
        drop(context);
        assert!(!dir.exists(), "the context directory goes with the build");

        let text = receive_context(root.path(), &b"FROM scratch\n"[..]).unwrap();
        assert_eq!(
            text.read_dockerfile("Dockerfile").unwrap(),
            "FROM scratch\n"
        );
        assert_eq!(std::fs::read_dir(text.path()).unwrap().count(), 0);
    }
}
