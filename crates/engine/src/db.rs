//! `containers.db`: every container's record, with names unique across processes, and every
//! volume's metadata (in the same file, so that "no container uses this volume" and removing
//! it are one transaction; see `volumes.rs`).

use std::{collections::BTreeMap, path::Path};

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
CREATE TABLE IF NOT EXISTS volumes (
    name    TEXT PRIMARY KEY,
    driver  TEXT NOT NULL,
    created TEXT NOT NULL,         -- RFC 3339, seconds, UTC
    labels  TEXT NOT NULL,         -- JSON object
    options TEXT NOT NULL          -- JSON object (the driver's options, `--opt`)
);
CREATE TABLE IF NOT EXISTS networks (
    name     TEXT PRIMARY KEY,
    id       TEXT NOT NULL UNIQUE,
    bridge   TEXT NOT NULL,
    subnet   TEXT NOT NULL,        -- 172.17.0.0/16
    gateway  TEXT NOT NULL,
    internal INTEGER NOT NULL,
    created  TEXT NOT NULL DEFAULT '',
    labels   TEXT NOT NULL DEFAULT '{}'   -- JSON object
);
-- One row per address in use, that is per running container and network it is on: the key
-- makes handing out an address twice impossible. `iface` numbers the container's interface
-- (eth0, eth1, ...); `names` are what the embedded DNS answers for it on the network.
CREATE TABLE IF NOT EXISTS ip_allocations (
    network   TEXT NOT NULL,
    address   TEXT NOT NULL,
    container TEXT NOT NULL,
    iface     INTEGER NOT NULL DEFAULT 0,
    names     TEXT NOT NULL DEFAULT '[]',  -- JSON array of lowercase names
    PRIMARY KEY (network, address)
);
CREATE INDEX IF NOT EXISTS ip_allocations_by_container ON ip_allocations (container);
";

/// The containers whose record mounts volume `?1`, oldest first.
const VOLUME_USERS: &str = "
SELECT DISTINCT c.id FROM containers AS c, json_each(c.record, '$.Mounts') AS m
WHERE json_extract(m.value, '$.Type') = 'volume' AND json_extract(m.value, '$.Name') = ?1
ORDER BY c.created, c.id
";

/// A `volumes` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeRow {
    pub(crate) name: String,
    pub(crate) driver: String,
    pub(crate) created: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) options: BTreeMap<String, String>,
}

/// What [`Db::delete_volume_if_unused`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum VolumeDeletion {
    /// The row is gone.
    Deleted,
    /// There was no such row.
    Missing,
    /// These containers use it; the row stays.
    InUse(Vec<String>),
}

pub(crate) struct Db {
    conn: Connection,
}

impl Db {
    pub(crate) fn open(path: &Path) -> Result<Db, EngineError> {
        let conn = berth_store::open_sqlite(path)?;
        // NORMAL: in WAL mode a power cut may lose the last records, never corrupt the file.
        // A container record is cheap to lose (its directory becomes an orphan that `container
        // prune` sweeps),
        // and an fsync per state change would double the time a short container takes.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        berth_store::retry_busy(|| conn.execute_batch(SCHEMA))?;
        // Version 1: networks tables made before `created` and `labels` existed get them.
        // Version 2: ip_allocations gets `iface` and `names`.
        let version: i64 =
            berth_store::retry_busy(|| conn.query_row("PRAGMA user_version", [], |r| r.get(0)))?;
        let migrations: [(i64, &str, &[&str]); 2] = [
            (
                1,
                "networks",
                &[
                    "created TEXT NOT NULL DEFAULT ''",
                    "labels TEXT NOT NULL DEFAULT '{}'",
                ],
            ),
            (
                2,
                "ip_allocations",
                &[
                    "iface INTEGER NOT NULL DEFAULT 0",
                    "names TEXT NOT NULL DEFAULT '[]'",
                ],
            ),
        ];
        for (to, table, columns) in migrations {
            if version >= to {
                continue;
            }
            for column in columns {
                let alter = format!("ALTER TABLE {table} ADD COLUMN {column}");
                match berth_store::retry_busy(|| conn.execute(&alter, [])) {
                    Ok(_) => {}
                    // A table made by this version's SCHEMA has it already.
                    Err(e) if e.to_string().contains("duplicate column") => {}
                    Err(e) => return Err(e.into()),
                }
            }
            berth_store::retry_busy(|| conn.pragma_update(None, "user_version", to))?;
        }
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
        // The volumes it mounts exist now, in this transaction: a `volume rm` either came
        // first (and the container is refused) or comes after (and sees the container).
        for mount in rec.mounts.iter().filter(|m| m.kind == "volume") {
            let exists = tx
                .query_row(
                    "SELECT 1 FROM volumes WHERE name = ?1",
                    [&mount.name],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !exists {
                return Err(EngineError::NoSuchVolume(mount.name.clone()));
            }
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

    /// Writes `State`, keeping the `State.Health` already there (a JSON null removes a key
    /// in `json_patch`, so a container without one stays without).
    pub(crate) fn set_state_keeping_health(
        &mut self,
        id: &str,
        state: &crate::ContainerState,
    ) -> Result<(), EngineError> {
        self.conn.execute(
            "UPDATE containers SET record = json_set(record, '$.State',
                 json_patch(json(?2), json_object('Health', json(json_extract(record, '$.State.Health')))))
             WHERE id = ?1",
            params![id, serde_json::to_string(state)?],
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
        // A running container's DNS name goes with it (its first name on each network).
        tx.execute(
            "UPDATE ip_allocations SET names = json_set(names, '$[0]', lower(?2)) \
             WHERE container = ?1 AND json_array_length(names) > 0",
            params![id, name],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes a container's record and frees its addresses, in one transaction: a crash
    /// never leaves an address held by a container that is gone. With `durable`, synced to
    /// disk (`FULL`) before it returns: the directory and hold go after it, and a power cut
    /// must not bring back a record whose files are gone.
    pub(crate) fn delete(&mut self, id: &str, durable: bool) -> Result<(), EngineError> {
        let delete = |conn: &mut Connection| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM containers WHERE id = ?1", [id])?;
            tx.execute("DELETE FROM ip_allocations WHERE container = ?1", [id])?;
            tx.commit()?;
            Ok(())
        };
        if durable {
            self.durably(delete)
        } else {
            delete(&mut self.conn)
        }
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

    /// Every container record, newest first.
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

    /// Every record as stored (ID, JSON), unparsed: what `system check` reads, so that one
    /// bad record is reported rather than hiding the rest.
    pub(crate) fn raw_records(&self) -> Result<Vec<(String, String)>, EngineError> {
        let mut stmt = self.conn.prepare("SELECT id, record FROM containers")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Every container's ID.
    pub(crate) fn container_ids(&self) -> Result<Vec<String>, EngineError> {
        let mut stmt = self.conn.prepare("SELECT id FROM containers")?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Containers that hold an address but have no record (left by a crash between the two
    /// in older versions, or by a create that died after allocating).
    pub(crate) fn allocations_without_record(&self) -> Result<Vec<String>, EngineError> {
        let mut stmt = self.conn.prepare(
            "SELECT DISTINCT container FROM ip_allocations \
             WHERE container NOT IN (SELECT id FROM containers)",
        )?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    // ------------------------------------------------------------ volumes

    pub(crate) fn volume(&self, name: &str) -> Result<Option<VolumeRow>, EngineError> {
        let row = self
            .conn
            .query_row(
                "SELECT name, driver, created, labels, options FROM volumes WHERE name = ?1",
                [name],
                raw_volume,
            )
            .optional()?;
        row.map(parse_volume).transpose()
    }

    /// Every volume, by name.
    pub(crate) fn volumes(&self) -> Result<Vec<VolumeRow>, EngineError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, driver, created, labels, options FROM volumes ORDER BY name")?;
        let rows = stmt
            .query_map([], raw_volume)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(parse_volume).collect()
    }

    /// Adds a volume's row. Synced to disk before it returns (`synchronous=FULL` for this
    /// one commit): the row is what says the volume's directory holds user data, so a power
    /// cut must not lose a row whose volume was already used.
    pub(crate) fn insert_volume(&mut self, row: &VolumeRow) -> Result<(), EngineError> {
        self.durably(|conn| {
            conn.execute(
                "INSERT INTO volumes (name, driver, created, labels, options) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    row.name,
                    row.driver,
                    row.created,
                    serde_json::to_string(&row.labels)?,
                    serde_json::to_string(&row.options)?
                ],
            )?;
            Ok(())
        })
    }

    /// The IDs of the containers whose record mounts the volume `name`.
    pub(crate) fn volume_users(&self, name: &str) -> Result<Vec<String>, EngineError> {
        let mut stmt = self.conn.prepare_cached(VOLUME_USERS)?;
        let ids = stmt
            .query_map([name], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(ids)
    }

    /// Deletes a volume's row unless a container's record mounts it, in one write
    /// transaction: a container recorded with the volume at the same moment either comes
    /// first (and the volume stays) or after (and finds it gone).
    pub(crate) fn delete_volume_if_unused(
        &mut self,
        name: &str,
    ) -> Result<VolumeDeletion, EngineError> {
        self.durably(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let users = {
                let mut stmt = tx.prepare_cached(VOLUME_USERS)?;
                stmt.query_map([name], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            };
            if !users.is_empty() {
                return Ok(VolumeDeletion::InUse(users));
            }
            let deleted = tx.execute("DELETE FROM volumes WHERE name = ?1", [name])?;
            tx.commit()?;
            Ok(if deleted == 0 {
                VolumeDeletion::Missing
            } else {
                VolumeDeletion::Deleted
            })
        })
    }

    /// The network called `name`.
    pub(crate) fn network(
        &self,
        name: &str,
    ) -> Result<Option<crate::networks::Network>, EngineError> {
        Ok(self
            .networks_where("WHERE name = ?1", name)?
            .into_iter()
            .next())
    }

    /// Every network, by name.
    pub(crate) fn networks(&self) -> Result<Vec<crate::networks::Network>, EngineError> {
        self.networks_where("WHERE ?1 = ?1 ORDER BY name", "")
    }

    fn networks_where(
        &self,
        clause: &str,
        param: &str,
    ) -> Result<Vec<crate::networks::Network>, EngineError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT name, id, bridge, subnet, gateway, internal, created, labels FROM networks {clause}"
        ))?;
        let rows = stmt.query_map([param], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, bool>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, id, bridge, subnet, gateway, internal, created, labels) = row?;
            let corrupt = |what: &str| EngineError::Invalid(format!("network {name}: bad {what}"));
            out.push(crate::networks::Network {
                subnet: berth_net::Ipv4Net::parse(&subnet).map_err(|_| corrupt("subnet"))?,
                gateway: gateway.parse().map_err(|_| corrupt("gateway"))?,
                labels: serde_json::from_str(&labels).map_err(|_| corrupt("labels"))?,
                name,
                id,
                bridge,
                internal,
                created,
            });
        }
        Ok(out)
    }

    /// Records a network unless one of that name exists; returns the one recorded.
    pub(crate) fn insert_network(
        &mut self,
        n: &crate::networks::Network,
    ) -> Result<crate::networks::Network, EngineError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO networks (name, id, bridge, subnet, gateway, internal, created, labels) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                n.name,
                n.id,
                n.bridge,
                n.subnet.to_string(),
                n.gateway.to_string(),
                n.internal,
                n.created,
                serde_json::to_string(&n.labels)?,
            ],
        )?;
        self.network(&n.name)?
            .ok_or_else(|| EngineError::Invalid(format!("network {} vanished", n.name)))
    }

    /// Deletes a network's row unless a container's record names it; returns the containers
    /// that do (the row stays then).
    pub(crate) fn delete_network_if_unused(
        &mut self,
        name: &str,
    ) -> Result<Vec<String>, EngineError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let users: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT c.id FROM containers AS c, json_each(c.record, '$.NetworkSettings.Networks') AS n \
                 WHERE n.key = ?1",
            )?;
            let rows = stmt.query_map([name], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if users.is_empty() {
            tx.execute("DELETE FROM networks WHERE name = ?1", [name])?;
            tx.execute("DELETE FROM ip_allocations WHERE network = ?1", [name])?;
        }
        tx.commit()?;
        Ok(users)
    }

    /// Takes the lowest free address of `subnet` (not its network address, `gateway` or
    /// broadcast) and the lowest interface number `container` does not use yet, in one
    /// immediate transaction; the embedded DNS answers `names` with the address.
    pub(crate) fn allocate_ip(
        &mut self,
        network: &str,
        subnet: berth_net::Ipv4Net,
        gateway: std::net::Ipv4Addr,
        container: &str,
        names: &[String],
    ) -> Result<(std::net::Ipv4Addr, u32), EngineError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let used: std::collections::BTreeSet<std::net::Ipv4Addr> = {
            let mut stmt = tx.prepare("SELECT address FROM ip_allocations WHERE network = ?1")?;
            let rows = stmt.query_map([network], |r| r.get::<_, String>(0))?;
            rows.filter_map(|r| r.ok()?.parse().ok()).collect()
        };
        let ifaces: std::collections::BTreeSet<u32> = {
            let mut stmt = tx.prepare("SELECT iface FROM ip_allocations WHERE container = ?1")?;
            let rows = stmt.query_map([container], |r| r.get::<_, u32>(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let iface = (0..).find(|i| !ifaces.contains(i)).unwrap_or(0);
        let address = (1..subnet.size().saturating_sub(1))
            .filter_map(|i| subnet.host(i))
            .find(|a| *a != gateway && !used.contains(a))
            .ok_or_else(|| {
                EngineError::Invalid(format!("no available IPv4 addresses on network {network}"))
            })?;
        tx.execute(
            "INSERT INTO ip_allocations (network, address, container, iface, names) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                network,
                address.to_string(),
                container,
                iface,
                serde_json::to_string(names)?
            ],
        )?;
        tx.commit()?;
        Ok((address, iface))
    }

    /// The networks `container` has an address on, with its interface number on each.
    pub(crate) fn endpoints_of(&self, container: &str) -> Result<Vec<(String, u32)>, EngineError> {
        let mut stmt = self.conn.prepare(
            "SELECT network, iface FROM ip_allocations WHERE container = ?1 ORDER BY iface",
        )?;
        let rows = stmt.query_map([container], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The addresses that `name` has on the networks `container` is on, for the embedded
    /// DNS. `name.network` asks only that network.
    pub(crate) fn dns_addresses(
        &self,
        container: &str,
        name: &str,
    ) -> Result<Vec<std::net::Ipv4Addr>, EngineError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT a.address FROM ip_allocations AS a, json_each(a.names) AS n \
             WHERE a.network IN (SELECT network FROM ip_allocations WHERE container = ?1) \
             AND (n.value = ?2 OR (n.value || '.' || lower(a.network)) = ?2) \
             ORDER BY a.address",
        )?;
        let rows = stmt.query_map([container, name], |r| r.get::<_, String>(0))?;
        Ok(rows.filter_map(|r| r.ok()?.parse().ok()).collect())
    }

    /// The name (`name.network`) that `address` has on a network `container` is on.
    pub(crate) fn dns_name_of(
        &self,
        container: &str,
        address: std::net::Ipv4Addr,
    ) -> Result<Option<String>, EngineError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT json_extract(a.names, '$[0]') || '.' || lower(a.network) FROM ip_allocations AS a \
                 WHERE a.address = ?2 AND json_array_length(a.names) > 0 \
                 AND a.network IN (SELECT network FROM ip_allocations WHERE container = ?1)",
            )?
            .query_row(params![container, address.to_string()], |r| r.get(0))
            .optional()?)
    }

    /// How many addresses of `network` are in use.
    pub(crate) fn ips_in_use(&self, network: &str) -> Result<i64, EngineError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM ip_allocations WHERE network = ?1",
            [network],
            |r| r.get(0),
        )?)
    }

    /// Frees the address `container` holds on `network`.
    pub(crate) fn release_ip(&mut self, container: &str, network: &str) -> Result<(), EngineError> {
        self.conn.execute(
            "DELETE FROM ip_allocations WHERE container = ?1 AND network = ?2",
            [container, network],
        )?;
        Ok(())
    }

    /// Frees every address `container` holds.
    pub(crate) fn release_ips(&mut self, container: &str) -> Result<(), EngineError> {
        self.conn.execute(
            "DELETE FROM ip_allocations WHERE container = ?1",
            [container],
        )?;
        Ok(())
    }

    /// Runs `f` with `synchronous=FULL`, then goes back to the connection's `NORMAL`.
    fn durably<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let result = f(&mut self.conn);
        let restored = self.conn.pragma_update(None, "synchronous", "NORMAL");
        let value = result?;
        restored?;
        Ok(value)
    }
}

type RawVolume = (String, String, String, String, String);

fn raw_volume(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawVolume> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn parse_volume(
    (name, driver, created, labels, options): RawVolume,
) -> Result<VolumeRow, EngineError> {
    Ok(VolumeRow {
        name,
        driver,
        created,
        labels: serde_json::from_str(&labels)?,
        options: serde_json::from_str(&options)?,
    })
}
