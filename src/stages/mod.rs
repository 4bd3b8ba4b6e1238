//! The stage kinds that ship with conveyor, one file each, and the registry
//! that the checker, `conveyor stages`, `schema` and the executor all read.
//! The contract they implement is in [`crate::stage`].

use crate::stage::KindSpec;

pub mod chaos;
mod cmyk;
pub mod colour;
pub mod contact_sheet;
pub mod copy;
pub mod crop;
pub mod decode;
pub mod encode;
pub mod exec;
pub mod filter;
pub mod filters;
mod gaussian;
pub mod geometry;
pub mod hash;
pub mod heif;
pub mod manifest;
pub mod read;
pub mod resize;
pub mod scan;
pub mod template;
pub mod thumbnail;
pub mod watermark;
pub mod write;

mod io;
mod jpeg_scans;
pub(crate) mod libjpeg;
mod progressive;

pub use io::*;

/// The set of stage kinds a pipeline may use. `Registry::builtin()` has every
/// kind that ships with conveyor; a program embedding conveyor can add its own.
#[derive(Debug, Clone)]
pub struct Registry {
    kinds: Vec<KindSpec>,
}

impl Registry {
    /// Every kind that ships with conveyor. Adding a kind is one line here.
    pub fn builtin() -> Registry {
        Registry {
            kinds: vec![
                scan::spec(),
                read::spec(),
                decode::spec(),
                resize::spec(),
                encode::spec(),
                write::spec(),
                thumbnail::spec(),
                crop::spec(),
                geometry::rotate_spec(),
                geometry::flip_spec(),
                geometry::grayscale_spec(),
                filters::blur_spec(),
                filters::sharpen_spec(),
                filters::adjust_spec(),
                watermark::spec(),
                filter::spec(),
                hash::spec(),
                copy::spec(),
                exec::spec(),
                manifest::spec(),
                contact_sheet::spec(),
                chaos::spec(),
            ],
        }
    }

    /// Add (or replace) a kind.
    pub fn register(&mut self, spec: KindSpec) {
        self.kinds.retain(|k| k.name != spec.name);
        self.kinds.push(spec);
    }

    pub fn get(&self, name: &str) -> Option<&KindSpec> {
        self.kinds.iter().find(|k| k.name == name)
    }

    pub fn kinds(&self) -> &[KindSpec] {
        &self.kinds
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.iter().map(|k| k.name).collect()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}
