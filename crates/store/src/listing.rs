//! `images`' selection: which images a listing shows under Docker's filters, for the CLI and
//! the Engine API alike.

use std::collections::BTreeMap;

use berth_reference::Reference;

use crate::{Filters, ImageRecord, Store, error::Result};

/// The filters `images` and `GET /images/json` accept.
pub const IMAGE_FILTERS: &[&str] = &[
    "dangling",
    "label",
    "label!",
    "before",
    "since",
    "reference",
    "until",
];

/// What a listing asks for.
pub struct ImageQuery<'a> {
    /// `--filter` / `filters=` (keys from [`IMAGE_FILTERS`]).
    pub filters: &'a Filters,
    /// Build intermediates too (`-a`).
    pub all: bool,
    /// `reference=` patterns (Go's `path.Match`) and the CLI's `REPOSITORY` argument.
    pub references: Vec<String>,
    /// Load each image's labels (a label filter loads them anyway).
    pub labels: bool,
}

/// One image a listing shows.
#[derive(Debug, Clone)]
pub struct ListedImage {
    /// Its record. With a reference filter, its tags and repository digests are only those
    /// that matched.
    pub record: ImageRecord,
    /// Its config's labels, when asked for or filtered on.
    pub labels: Option<BTreeMap<String, String>>,
}

impl Store {
    /// The images a listing shows, newest first, as Docker's `images` selects them.
    pub fn list_images(&self, query: &ImageQuery<'_>) -> Result<Vec<ListedImage>> {
        let filters = query.filters;
        // A malformed pattern is an error, as Docker's (not a filter that matches nothing).
        for pattern in &query.references {
            berth_dockerfile::path_match(pattern, pattern).map_err(|e| {
                crate::FilterError::Value {
                    key: "reference".into(),
                    value: format!("{pattern} ({e})"),
                }
            })?;
        }
        let dangling = filters.bool("dangling")?;
        let bound = |key: &str| -> Result<Option<jiff::Timestamp>> {
            match filters.get(key).last() {
                None => Ok(None),
                Some(name) => Ok(self.resolve(name)?.created_at()),
            }
        };
        let (before, after) = (bound("before")?, bound("since")?);
        let until = filters.until()?;
        let by_label = !filters.get("label").is_empty() || !filters.get("label!").is_empty();
        let matching = |name: &str| {
            query
                .references
                .iter()
                .any(|pattern| berth_dockerfile::path_match(pattern, name).unwrap_or(false))
        };
        let mut out = Vec::new();
        for mut rec in self.images()? {
            let created = rec.created_at();
            if (!query.all && rec.is_build_intermediate())
                || dangling.is_some_and(|d| d != rec.tags.is_empty())
                // Go's zero time is before every bound, as dockerd compares an image
                // without a creation time.
                || before.is_some_and(|b| created.is_some_and(|c| c >= b))
                || after.is_some_and(|s| created.is_none_or(|c| c <= s))
                || until.is_some_and(|u| created.is_some_and(|c| c >= u))
            {
                continue;
            }
            if !query.references.is_empty() {
                let tag_matches = |t: &Reference| {
                    let repo = t.familiar_name();
                    matching(&repo) || matching(&format!("{repo}:{}", t.tag().unwrap_or("latest")))
                };
                rec.tags.retain(tag_matches);
                rec.repo_digests.retain(|d| matching(&d.familiar_name()));
                if rec.tags.is_empty() && rec.repo_digests.is_empty() {
                    continue;
                }
            }
            let mut labels = None;
            if by_label || query.labels {
                // An image removed by another process since the listing is not shown.
                let Ok(image) = self.image(rec.clone()) else {
                    continue;
                };
                labels = image.config.config.and_then(|c| c.labels);
                if !filters.labels_match(labels.as_ref()) {
                    continue;
                }
            }
            out.push(ListedImage {
                record: rec,
                labels,
            });
        }
        Ok(out)
    }
}
