//! The metadata database (`meta.db`, SQLite in WAL mode): which images exist, and the tags
//! and repository digests that point at them.
//!
//! Many berth processes open it at once (there is no daemon), so every change is one short
//! `BEGIN IMMEDIATE` transaction, and no transaction is held across blob or layer I/O.
//! Invariant: a row in `images` is written only after its manifest, config and layers are
//! published on disk, so a reader never sees an image whose content is missing.

use std::{path::Path, time::Duration};

use berth_reference::{Digest, Reference};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::error::{Result, StoreError};

/// The schema version this build writes; older databases are migrated on open.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS images (
    id        TEXT PRIMARY KEY,      -- config digest (the image ID)
    manifest  TEXT NOT NULL,         -- manifest blob digest
    created   TEXT,                  -- the config's RFC 3339 creation time
    size      INTEGER NOT NULL,      -- unpacked size of all layers, bytes
    added     INTEGER NOT NULL,      -- unix seconds when it entered this store
    parent    TEXT                   -- build parent (intermediate images), if any
);
CREATE TABLE IF NOT EXISTS tags (
    name   TEXT PRIMARY KEY,         -- normalized name:tag, docker.io/library/busybox:latest
    image  TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image);
CREATE TABLE IF NOT EXISTS repo_digests (
    name   TEXT PRIMARY KEY,         -- normalized name@digest, as pulled or pushed
    image  TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS repo_digests_image ON repo_digests(image);
-- Images that containers use: never deleted while held (version 2).
CREATE TABLE IF NOT EXISTS holds (
    holder TEXT PRIMARY KEY,         -- e.g. container:<id>
    image  TEXT NOT NULL REFERENCES images(id)
);
CREATE INDEX IF NOT EXISTS holds_image ON holds(image);
";

/// One image as the database knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// The image ID (config digest).
    pub id: Digest,
    /// The manifest that describes it.
    pub manifest: Digest,
    /// Creation time from the config.
    pub created: Option<String>,
    /// Unpacked size in bytes.
    pub size: u64,
    /// Unix seconds when it was added to this store.
    pub added: i64,
    /// Parent image, for build intermediates.
    pub parent: Option<Digest>,
    /// Tags pointing at it (normalized references), sorted.
    pub tags: Vec<Reference>,
    /// Repository digests (`name@sha256:...`), sorted.
    pub repo_digests: Vec<Reference>,
}

impl ImageRecord {
    /// When the image was made (its config's `created`), if that reads as RFC 3339.
    pub fn created_at(&self) -> Option<jiff::Timestamp> {
        crate::config::parse_created(self.created.as_deref())
    }

    /// A build's intermediate image (its step cache): a parent and no tag. Docker's `images`
    /// shows these with `-a` only.
    pub fn is_build_intermediate(&self) -> bool {
        self.parent.is_some() && self.tags.is_empty()
    }
}

/// Pages in the WAL after which a commit checkpoints it (see [`open_sqlite`]).
const WAL_CHECKPOINT_PAGES: i64 = 128;

/// Opens one of berth's SQLite databases as all of them are shared between processes: WAL
/// journal, a long busy timeout, and no checkpoint on close. The caller sets `synchronous`.
pub fn open_sqlite(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(60))?;
    // Every berth command opens and closes its databases; checkpointing (two fsyncs and
    // deleting the WAL) on every close would dominate short commands. SQLite checkpoints by
    // itself as the WAL grows.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    // Switching a new database to WAL takes a lock that SQLite does not wait for with the
    // busy handler: the first processes to open a new file at once can see SQLITE_BUSY.
    retry_busy(|| conn.pragma_update(None, "journal_mode", "WAL"))?;
    // The first connection of a process (every berth command's) rebuilds the WAL index by
    // reading and checksumming every frame since the last checkpoint, one read per page: at
    // SQLite's default of 1,000 pages that is milliseconds on every command. A short WAL
    // costs a checkpoint (two fsyncs) every WAL_CHECKPOINT_PAGES pages written instead.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    Ok(conn)
}

/// Runs `f` again while SQLite answers SQLITE_BUSY without having waited (schema and
/// journal-mode changes on a database that other processes are opening too), for up to about
/// ten seconds.
pub fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let mut delay = Duration::from_millis(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// An open handle on `meta.db`.
pub struct Meta {
    conn: Connection,
}

impl Meta {
    pub(crate) fn open(path: &Path) -> Result<Meta> {
        let conn = open_sqlite(path)?;
        // FULL: a tag the user was told about survives a power cut.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version < SCHEMA_VERSION {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))?;
        } else if version > SCHEMA_VERSION {
            return Err(StoreError::corrupt(
                path.display().to_string(),
                format!("schema version {version} is newer than this berth understands"),
            ));
        }
        Ok(Meta { conn })
    }

    /// Adds an image (if new) and points `tags` at it, atomically. Returns each tag that
    /// was taken from another image, with that image.
    pub(crate) fn register_image(
        &mut self,
        rec: &ImageRecord,
        tags: &[Reference],
    ) -> Result<Vec<(Reference, Digest)>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR IGNORE INTO images (id, manifest, created, size, added, parent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                rec.id.to_string(),
                rec.manifest.to_string(),
                rec.created,
                rec.size as i64,
                rec.added,
                rec.parent.as_ref().map(|p| p.to_string()),
            ],
        )?;
        let mut displaced = Vec::new();
        for tag in tags {
            if let Some(old) = point_name(&tx, "tags", tag, &rec.id)? {
                displaced.push((tag.clone(), old));
            }
        }
        for d in &rec.repo_digests {
            point_name(&tx, "repo_digests", d, &rec.id)?;
        }
        tx.commit()?;
        Ok(displaced)
    }

    /// Records (or clears) the build parent of an image: set, it is an intermediate image of
    /// a build, which `images` hides unless tagged.
    pub(crate) fn set_parent(&mut self, id: &Digest, parent: Option<&Digest>) -> Result<()> {
        self.conn.execute(
            "UPDATE images SET parent = ?2 WHERE id = ?1",
            params![id.to_string(), parent.map(|p| p.to_string())],
        )?;
        Ok(())
    }

    /// Records a push: the image's manifest becomes `manifest` (the one pushed), and
    /// `names` (`name@sha256:…`) are its repository digests; one that named another image
    /// moves.
    pub(crate) fn record_push(
        &mut self,
        image: &Digest,
        manifest: &Digest,
        names: &[Reference],
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE images SET manifest = ?2 WHERE id = ?1",
            params![image.to_string(), manifest.to_string()],
        )?;
        if changed == 0 {
            return Err(StoreError::ImageNotFound(image.to_string()));
        }
        for name in names {
            point_name(&tx, "repo_digests", name, image)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Points one more tag at an existing image.
    pub(crate) fn set_tag(&mut self, tag: &Reference, image: &Digest) -> Result<()> {
        if self.name_if_present(image, std::slice::from_ref(tag), &[])? {
            Ok(())
        } else {
            Err(StoreError::ImageNotFound(image.to_string()))
        }
    }

    /// Points `tags` and `repo_digests` at `image` if it is still there, in one transaction
    /// (so an `rmi` cannot delete it in between); false when it is gone.
    pub(crate) fn name_if_present(
        &mut self,
        image: &Digest,
        tags: &[Reference],
        repo_digests: &[Reference],
    ) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !row_exists(&tx, "SELECT 1 FROM images WHERE id = ?1", image)? {
            return Ok(false);
        }
        for tag in tags {
            point_name(&tx, "tags", tag, image)?;
        }
        for name in repo_digests {
            point_name(&tx, "repo_digests", name, image)?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// The image a tag points at.
    pub fn resolve_tag(&self, tag: &Reference) -> Result<Option<Digest>> {
        let table = if tag.digest().is_some() {
            "repo_digests"
        } else {
            "tags"
        };
        let id: Option<String> = self
            .conn
            .query_row(
                &format!("SELECT image FROM {table} WHERE name = ?1"),
                [tag.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        id.map(|s| parse_digest(&s)).transpose()
    }

    /// Image IDs starting with `prefix` (hex, without the algorithm).
    pub fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<Digest>> {
        let pattern = format!("sha256:{}%", prefix.replace(['%', '_'], ""));
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM images WHERE id LIKE ?1")?;
        let ids = stmt
            .query_map([pattern], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        ids.iter().map(|s| parse_digest(s)).collect()
    }

    /// One image with its tags.
    pub fn image(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        Ok(self
            .images_where("WHERE id = ?1", &[&id.to_string()])?
            .into_iter()
            .next())
    }

    /// Every image with its tags, newest first.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.images_where("", &[])
    }

    fn images_where(&self, cond: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<ImageRecord>> {
        // One read transaction, so the images and their tags are one consistent snapshot.
        let tx = self.conn.unchecked_transaction()?;
        let mut out = Vec::new();
        {
            let mut stmt = tx.prepare(&format!(
                "SELECT id, manifest, created, size, added, parent FROM images {cond}"
            ))?;
            let rows = stmt.query_map(args, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })?;
            for row in rows {
                let (id, manifest, created, size, added, parent) = row?;
                out.push(ImageRecord {
                    id: parse_digest(&id)?,
                    manifest: parse_digest(&manifest)?,
                    created,
                    size: size as u64,
                    added,
                    parent: parent.as_deref().map(parse_digest).transpose()?,
                    tags: Vec::new(),
                    repo_digests: Vec::new(),
                });
            }
            for (table, is_tag) in [("tags", true), ("repo_digests", false)] {
                let mut stmt =
                    tx.prepare(&format!("SELECT name, image FROM {table} ORDER BY name"))?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
                for row in rows {
                    let (name, image) = row?;
                    if let Some(rec) = out.iter_mut().find(|i| i.id.to_string() == image) {
                        let r = Reference::parse_normalized(&name)
                            .map_err(|e| StoreError::corrupt(format!("stored name {name}"), e))?;
                        if is_tag {
                            rec.tags.push(r);
                        } else {
                            rec.repo_digests.push(r);
                        }
                    }
                }
            }
        }
        tx.commit()?;
        // Newest first by the actual instant: RFC 3339 strings with other offsets or
        // precisions do not sort as text.
        let instant = |r: &ImageRecord| {
            r.created_at()
                .map_or(r.added as i128 * 1_000_000_000, |t| t.as_nanosecond())
        };
        out.sort_by(|a, b| instant(b).cmp(&instant(a)).then(b.added.cmp(&a.added)));
        Ok(out)
    }

    /// Removes one tag; returns whether it existed.
    pub(crate) fn remove_tag(&mut self, tag: &Reference) -> Result<bool> {
        let table = if tag.digest().is_some() {
            "repo_digests"
        } else {
            "tags"
        };
        let n = self.conn.execute(
            &format!("DELETE FROM {table} WHERE name = ?1"),
            [tag.to_string()],
        )?;
        Ok(n > 0)
    }

    /// Removes an image record if no tag names it any more (checked in the same
    /// transaction). Returns whether it was removed.
    pub(crate) fn remove_image_if_untagged(&mut self, id: &Digest) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let tagged = row_exists(&tx, "SELECT 1 FROM tags WHERE image = ?1 LIMIT 1", id)?;
        let held = row_exists(&tx, "SELECT 1 FROM holds WHERE image = ?1 LIMIT 1", id)?;
        if tagged || held {
            return Ok(false);
        }
        let n = tx.execute("DELETE FROM images WHERE id = ?1", [id.to_string()])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Records that `holder` uses `image`, which then cannot be deleted until released.
    pub(crate) fn hold(&mut self, holder: &str, image: &Digest) -> Result<()> {
        // Holds come and go with every container: not worth an fsync each (WAL keeps the file
        // consistent; a hold lost in a power cut only lets an image be removed that a
        // container record named).
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let result = self.hold_in_transaction(holder, image);
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        result
    }

    fn hold_in_transaction(&mut self, holder: &str, image: &Digest) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !row_exists(&tx, "SELECT 1 FROM images WHERE id = ?1", image)? {
            return Err(StoreError::ImageNotFound(image.to_string()));
        }
        tx.execute(
            "INSERT OR REPLACE INTO holds (holder, image) VALUES (?1, ?2)",
            params![holder, image.to_string()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Drops `holder`'s hold, if it has one.
    pub(crate) fn release(&mut self, holder: &str) -> Result<()> {
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let result = self
            .conn
            .execute("DELETE FROM holds WHERE holder = ?1", [holder]);
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        result?;
        Ok(())
    }

    /// The holders of `image`, sorted.
    pub(crate) fn holders(&self, image: &Digest) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT holder FROM holds WHERE image = ?1 ORDER BY holder")?;
        let rows = stmt
            .query_map([image.to_string()], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Every holder with the image it holds.
    pub(crate) fn holds(&self) -> Result<Vec<(String, Digest)>> {
        let mut stmt = self.conn.prepare("SELECT holder, image FROM holds")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(h, i)| Ok((h, parse_digest(&i)?)))
            .collect()
    }

    /// Every image's manifest digest (the roots for garbage collection).
    pub(crate) fn manifests(&self) -> Result<Vec<(Digest, Digest)>> {
        let mut stmt = self.conn.prepare("SELECT id, manifest FROM images")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.iter()
            .map(|(i, m)| Ok((parse_digest(i)?, parse_digest(m)?)))
            .collect()
    }
}

/// Points `name` (a row of `tags` or `repo_digests`) at `image`; returns the image it
/// pointed at before, if that was another one.
fn point_name(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    name: &Reference,
    image: &Digest,
) -> Result<Option<Digest>> {
    let (name, image) = (name.to_string(), image.to_string());
    let old: Option<String> = tx
        .query_row(
            &format!("SELECT image FROM {table} WHERE name = ?1"),
            [&name],
            |r| r.get(0),
        )
        .optional()?;
    tx.execute(
        &format!(
            "INSERT INTO {table} (name, image) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET image = excluded.image"
        ),
        params![name, image],
    )?;
    old.filter(|o| *o != image)
        .map(|o| parse_digest(&o))
        .transpose()
}

/// Whether `sql` (with `?1` bound to `id`) returns a row.
fn row_exists(tx: &rusqlite::Transaction<'_>, sql: &str, id: &Digest) -> Result<bool> {
    Ok(tx
        .query_row(sql, [id.to_string()], |_| Ok(()))
        .optional()?
        .is_some())
}

fn parse_digest(s: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|e| StoreError::corrupt(format!("stored digest {s}"), e))
}
