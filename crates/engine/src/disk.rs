//! What the state root's objects take on disk (`system df`, the CLI's and the Engine API's
//! `/system/df`): images with the space their layers share, containers' writable layers,
//! and volumes with how many containers use them.

use std::collections::HashMap;

use berth_reference::Digest;
use berth_store::ImageRecord;

use crate::{ContainerRecord, Engine, EngineError, Volume, volumes::dir_size};

/// One image's share.
#[derive(Debug, Clone)]
pub struct ImageUsage {
    /// Its record (`size` is all its layers).
    pub record: ImageRecord,
    /// The bytes of its layers that other images use too.
    pub shared_size: u64,
    /// How many containers use it.
    pub containers: usize,
}

/// One container's share.
#[derive(Debug, Clone)]
pub struct ContainerUsage {
    /// Its record.
    pub record: ContainerRecord,
    /// Its writable layer.
    pub size_rw: u64,
    /// Its writable layer and its image.
    pub size_root_fs: u64,
}

/// One volume's share.
#[derive(Debug, Clone)]
pub struct VolumeUsage {
    /// The volume.
    pub volume: Volume,
    /// The bytes of its data.
    pub size: u64,
    /// How many containers use it.
    pub ref_count: usize,
}

/// Everything `system df` shows.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    /// Every layer once, however many images share it.
    pub layers_size: u64,
    /// The images.
    pub images: Vec<ImageUsage>,
    /// The containers.
    pub containers: Vec<ContainerUsage>,
    /// The volumes.
    pub volumes: Vec<VolumeUsage>,
}

impl Engine {
    /// Measures the state root: layers once each, images and the layers they share,
    /// containers' own layers, volumes' data.
    pub fn disk_usage(&mut self) -> Result<DiskUsage, EngineError> {
        let containers = self.containers()?;
        let records = self.store.images()?;
        // Each layer's size and how many images use it.
        let mut layers: HashMap<Digest, (u64, usize)> = HashMap::new();
        let mut image_layers = Vec::new();
        for rec in &records {
            let chains = self.store.image(rec.clone())?.chain_ids()?;
            for chain in &chains {
                let size = self.store.layer(chain)?.map_or(0, |l| l.size);
                layers.entry(chain.clone()).or_insert((size, 0)).1 += 1;
            }
            image_layers.push(chains);
        }
        let layers_size = layers.values().map(|(size, _)| size).sum();
        let images = records
            .into_iter()
            .zip(&image_layers)
            .map(|(record, chains)| {
                let shared_size = chains
                    .iter()
                    .map(|c| layers[c])
                    .filter(|(_, users)| *users > 1)
                    .map(|(size, _)| size)
                    .sum();
                let id = record.id.to_string();
                ImageUsage {
                    containers: containers.iter().filter(|c| c.image == id).count(),
                    record,
                    shared_size,
                }
            })
            .collect::<Vec<_>>();
        let image_size = |id: &str| {
            images
                .iter()
                .find(|i| i.record.id.as_str() == id)
                .map_or(0, |i| i.record.size)
        };
        let containers: Vec<ContainerUsage> = containers
            .into_iter()
            .map(|record| {
                let size_rw = self.container_size(&record.id);
                ContainerUsage {
                    size_root_fs: size_rw + image_size(&record.image),
                    size_rw,
                    record,
                }
            })
            .collect();
        let mut volumes = Vec::new();
        for volume in self.volumes()? {
            let ref_count = containers
                .iter()
                .filter(|c| {
                    c.record
                        .mounts
                        .iter()
                        .any(|m| m.kind == "volume" && m.name == volume.name)
                })
                .count();
            volumes.push(VolumeUsage {
                size: dir_size(std::path::Path::new(&volume.mountpoint)),
                ref_count,
                volume,
            });
        }
        Ok(DiskUsage {
            layers_size,
            images,
            containers,
            volumes,
        })
    }
}
