//! The step cache: a key per step (its parent's key, the instruction as expanded, and the
//! content digest of what it copies) to the image the step made. `build/cache.db` holds the
//! keys; each cached image is held in the store (`build-cache:<key>`), so image pruning and
//! garbage collection leave it alone until `builder prune` lets go.

use std::path::Path;

use berth_reference::Digest;
use berth_store::Store;
use rusqlite::{Connection, OptionalExtension, params};

use crate::BuildError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS steps (
    key       TEXT PRIMARY KEY,   -- sha256 of the step's inputs
    image     TEXT NOT NULL,      -- the image it made (an ID in the store)
    created   TEXT NOT NULL,
    last_used TEXT NOT NULL
);
";

/// The holder name of a cached step's image in the store.
fn holder(key: &Digest) -> String {
    format!("{}{}", berth_store::CACHE_HOLDER_PREFIX, key.encoded())
}

/// The step cache of one state root.
pub struct Cache {
    conn: Connection,
}

impl Cache {
    /// Opens (creating) `<root>/build/cache.db`.
    pub fn open(root: &Path) -> Result<Cache, BuildError> {
        let dir = root.join("build");
        std::fs::create_dir_all(&dir)
            .map_err(|e| BuildError::io(format!("create {}", dir.display()), e))?;
        let conn = berth_store::open_sqlite(&dir.join("cache.db"))?;
        berth_store::retry_busy(|| conn.execute_batch(SCHEMA))?;
        Ok(Cache { conn })
    }

    /// The image `key` made, when it is still in the store.
    pub fn get(&self, store: &Store, key: &Digest) -> Result<Option<Digest>, BuildError> {
        let image: Option<String> = self
            .conn
            .query_row(
                "SELECT image FROM steps WHERE key = ?1",
                [key.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        let Some(image) = image.and_then(|i| Digest::parse(&i).ok()) else {
            return Ok(None);
        };
        if store.resolve(&image.to_string()).is_err() {
            return Ok(None);
        }
        self.conn.execute(
            "UPDATE steps SET last_used = ?2 WHERE key = ?1",
            params![key.to_string(), jiff::Timestamp::now().to_string()],
        )?;
        Ok(Some(image))
    }

    /// Records that `key` made `image`, and holds the image in the store.
    pub fn put(&self, store: &mut Store, key: &Digest, image: &Digest) -> Result<(), BuildError> {
        store.hold_image(&holder(key), image)?;
        let now = jiff::Timestamp::now().to_string();
        self.conn.execute(
            "INSERT OR REPLACE INTO steps (key, image, created, last_used) VALUES (?1, ?2, ?3, ?3)",
            params![key.to_string(), image.to_string(), now],
        )?;
        Ok(())
    }

    /// `builder prune`: forgets every step, lets go of its image, and removes the images that
    /// only builds made (untagged intermediate images, among them those a rerun of a step
    /// replaced in the cache) unless something holds them, with one collection; returns how
    /// many steps there were and the bytes freed.
    pub fn prune(&self, store: &mut Store) -> Result<(usize, u64), BuildError> {
        let keys: Vec<String> = {
            let mut stmt = self.conn.prepare("SELECT key FROM steps")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for key in &keys {
            if let Ok(digest) = Digest::parse(key) {
                store.release_image(&holder(&digest))?;
            }
        }
        self.conn.execute("DELETE FROM steps", [])?;
        let intermediate: std::collections::HashSet<Digest> = store
            .images()?
            .into_iter()
            .filter(|r| r.tags.is_empty() && r.parent.is_some())
            .map(|r| r.id)
            .collect();
        let report = store.prune_images(false, Some(&intermediate))?;
        Ok((keys.len(), report.reclaimed))
    }
}
