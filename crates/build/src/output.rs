//! `build -o`: the built image's filesystem as files instead of an image (BuildKit's
//! `local` and `tar` exporters).

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use berth_engine::Engine;
use berth_reference::Digest;

use crate::BuildError;

/// Writes the filesystem of `image` (its layers merged) to `out` as one tar.
pub fn export_filesystem(
    engine: &mut Engine,
    image: &Digest,
    out: impl Write,
) -> Result<(), BuildError> {
    let Some(view) = crate::copy::image_view(engine, image).map_err(BuildError::Invalid)? else {
        // No layer: an empty tree, an empty archive.
        return tar_end(out);
    };
    berth_store::pack_path(
        view.as_fd(),
        Path::new("/"),
        &berth_store::PackOptions {
            name: PathBuf::new(),
            follow_top: false,
            owner: None,
            owner_names: false,
        },
        out,
    )
    .map_err(|e| BuildError::Invalid(format!("export the image's files: {e}")))?;
    Ok(())
}

/// An empty tar: its two zero blocks.
fn tar_end(mut out: impl Write) -> Result<(), BuildError> {
    out.write_all(&[0u8; 1024])
        .map_err(|e| BuildError::io("write the archive", e))
}
