//! `containers.db`: every container's record, with names unique across processes.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::{EngineError, record::ContainerRecord};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS containers (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    record  TEXT NOT NULL          -- ContainerRecord as JSON
);
-- `ps` lists newest first: walked in index order, the list needs no sort (which spilled to a
-- temporary file with a thousand containers).
CREATE INDEX IF NOT EXISTS containers_by_created ON containers (created);
";

pub(crate) struct Db {
    conn: Connection,
}

impl Db {
    pub(crate) fn open(path: &Path) -> Result<Db, EngineError> {
        let conn = berth_store::open_sqlite(path)?;
        // NORMAL: in WAL mode a power cut may lose the last records, never corrupt the file.
        // A container record is cheap to lose (its directory is found and removed as stale),
        // and an fsync per state change would double the time a short container takes.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Db { conn })
    }

    /// Adds a container; fails with `NameInUse` when another has the name.
    pub(crate) fn insert(&mut self, rec: &ContainerRecord) -> Result<(), EngineError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let holder: Option<String> = tx
            .query_row(
                "SELECT id FROM containers WHERE name = ?1",
                [&rec.name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = holder {
            return Err(EngineError::NameInUse {
                name: rec.name.clone(),
                id,
            });
        }
        tx.execute(
            "INSERT INTO containers (id, name, created, record) VALUES (?1, ?2, ?3, ?4)",
            params![rec.id, rec.name, rec.created, serde_json::to_string(rec)?],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces one top-level field of a record (`State`, `RestartCount`, ...), leaving the
    /// rest as it is now: a monitor recording a state must not undo what another process
    /// wrote meanwhile (`stop` setting `HasBeenManuallyStopped`).
    pub(crate) fn set_field(
        &mut self,
        id: &str,
        field: &str,
        value: &impl serde::Serialize,
    ) -> Result<(), EngineError> {
        self.conn.execute(
            "UPDATE containers SET record = json_set(record, ?2, json(?3)) WHERE id = ?1",
            params![id, format!("$.{field}"), serde_json::to_string(value)?],
        )?;
        Ok(())
    }

    /// Renames a container; fails with `NameInUse` when another has the name.
    pub(crate) fn rename(&mut self, id: &str, name: &str) -> Result<(), EngineError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let holder: Option<String> = tx
            .query_row("SELECT id FROM containers WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(holder) = holder {
            return Err(EngineError::NameInUse {
                name: name.to_string(),
                id: holder,
            });
        }
        tx.execute(
            "UPDATE containers SET name = ?2, record = json_set(record, '$.Name', ?2) WHERE id = ?1",
            params![id, name],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn delete(&mut self, id: &str) -> Result<(), EngineError> {
        self.conn
            .execute("DELETE FROM containers WHERE id = ?1", [id])?;
        Ok(())
    }

    pub(crate) fn get(&self, id: &str) -> Result<Option<ContainerRecord>, EngineError> {
        let json: Option<String> = self
            .conn
            .query_row("SELECT record FROM containers WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        json.map(|j| serde_json::from_str(&j).map_err(EngineError::from))
            .transpose()
    }

    /// Docker's lookup order: full ID, then exact name, then unique ID prefix.
    pub(crate) fn resolve(&self, key: &str) -> Result<Option<String>, EngineError> {
        let key = key.strip_prefix('/').unwrap_or(key);
        if let Some(rec) = self.get(key)? {
            return Ok(Some(rec.id));
        }
        let by_name: Option<String> = self
            .conn
            .query_row("SELECT id FROM containers WHERE name = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?;
        if by_name.is_some() {
            return Ok(by_name);
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM containers WHERE id >= ?1 AND id < ?2 LIMIT 2")?;
        let upper = format!("{key}g");
        let ids = stmt
            .query_map([key, upper.as_str()], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        match ids.as_slice() {
            [one] => Ok(Some(one.clone())),
            [] => Ok(None),
            _ => Err(EngineError::Ambiguous(key.to_string())),
        }
    }

    pub(crate) fn all(&self) -> Result<Vec<ContainerRecord>, EngineError> {
        let mut stmt = self
            .conn
            .prepare("SELECT record FROM containers ORDER BY created DESC")?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.iter()
            .map(|j| serde_json::from_str(j).map_err(EngineError::from))
            .collect()
    }
}
