//! Stage kinds: the trait every kind implements, the description each kind
//! registers (options, payload types, constructor), and the registry that the
//! checker, `conveyor stages` and the executor all read.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::item::{Item, PayloadType, Types};

pub mod chaos;
pub mod contact_sheet;
pub mod copy;
pub mod crop;
pub mod decode;
pub mod encode;
pub mod exec;
pub mod filter;
pub mod filters;
pub mod geometry;
pub mod hash;
pub mod manifest;
pub mod read;
pub mod resize;
pub mod scan;
pub mod template;
pub mod thumbnail;
pub mod watermark;
pub mod write;

/// Why a stage could not process an item. The message is shown to the user
/// next to the item's path, so it says what went wrong, not where in the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageError(pub String);

impl StageError {
    pub fn new(msg: impl Into<String>) -> StageError {
        StageError(msg.into())
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StageError {}

impl From<crate::output::OutputError> for StageError {
    fn from(e: crate::output::OutputError) -> Self {
        StageError(e.to_string())
    }
}

impl From<std::io::Error> for StageError {
    fn from(e: std::io::Error) -> Self {
        StageError(e.to_string())
    }
}

/// A stage that transforms one item at a time. Implementations are shared by
/// all workers of the stage, so per-worker scratch lives in thread locals.
pub trait Stage: Send + Sync {
    /// Process one item. `Ok(None)` drops the item on purpose (filtered).
    fn process(&self, item: Item) -> Result<Option<Item>, StageError>;

    /// The folder this stage writes into, if any: scans skip it so that a run
    /// never reads its own outputs back.
    fn output_dir(&self) -> Option<&Path> {
        None
    }

    /// True for sinks that gather every item (a manifest, a contact sheet).
    /// Their `collect` and `finish` run in conveyor's own process whatever
    /// the stage's mode; `process` may run in a worker.
    fn collects(&self) -> bool {
        false
    }

    /// Take what is needed from an item that came out of `process`.
    fn collect(&self, _item: &mut Item) {}

    /// Write the gathered result once every item is through. Returns the
    /// files written.
    fn finish(&self, _run: &Finish<'_>) -> Result<Vec<PathBuf>, StageError> {
        Ok(Vec::new())
    }

    /// What `process` would do, without reading pixels or writing files:
    /// for a dry run. Stages that name outputs record them in the item's
    /// `outputs`; the default passes the item on.
    fn plan(&self, item: Item) -> Result<Option<Item>, StageError> {
        Ok(Some(item))
    }

    /// The files `finish` would write, for a dry run.
    fn plan_finish(&self) -> Result<Vec<PathBuf>, StageError> {
        Ok(Vec::new())
    }

    /// True for stages that must see every item on every run (a contact
    /// sheet): items they would get are never skipped as up to date.
    fn needs_every_item(&self) -> bool {
        false
    }

    /// Files the stage's options name and its output depends on (a
    /// watermark's image, a program given as a path). Resume folds their
    /// size and modification time into fingerprints, so replacing one redoes
    /// the items that went through this stage.
    fn depends_on(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// What a gathering stage learns of the whole run when it finishes.
pub struct Finish<'a> {
    /// Items that failed, at any stage.
    pub failures: &'a [crate::report::Failure],
    /// Items skipped as up to date (their source and the files they have).
    pub up_to_date: &'a [(PathBuf, Vec<PathBuf>)],
}

/// Facts about the stage being built that are not among its kind's options.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// The stage's name.
    pub stage: String,
    /// The stage's per-item `timeout`, for kinds that enforce it themselves
    /// (e.g. `exec` ends its command) in every mode.
    pub timeout: Option<std::time::Duration>,
    /// The run's output guard: every stage that writes files places them
    /// through it (it knows the run's inputs and every claimed output).
    pub output: crate::output::Guard,
}

/// What a source reports for each entry it finds.
pub enum Found {
    Item(Box<Item>),
    /// An entry that could not be read (permission denied, a link loop ...).
    Error {
        path: PathBuf,
        reason: String,
    },
}

/// Facts a source needs from the rest of the graph.
#[derive(Debug, Default, Clone)]
pub struct SourceContext {
    /// Folders written by this run, never to be scanned.
    pub skip_dirs: Vec<PathBuf>,
    /// Where a source records the identity of every file it finds, so that
    /// no writer replaces one of them under another name.
    pub inputs: crate::inputs::InputSet,
}

/// A stage that produces items (e.g. `scan`).
pub trait Source: Send + Sync {
    /// Find items and hand each to `emit`, in a stable order. Stops early when
    /// `emit` returns false (the run is stopping).
    fn produce(&self, ctx: &SourceContext, emit: &mut dyn FnMut(Found) -> bool);

    /// The files this source reads, as a rule the output guard can apply
    /// to any path (so outputs never land on a file it found or will find).
    fn scope(&self) -> Option<crate::inputs::Scope> {
        None
    }
}

/// A constructed stage, ready to run.
pub enum Built {
    Source(Arc<dyn Source>),
    Stage(Arc<dyn Stage>),
}

/// What a kind gives downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Fixed(PayloadType),
    /// Passes items through with whatever payload they came with.
    SameAsInput,
}

/// A problem with one option of a stage, found while checking its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The option's key, or `None` when the problem concerns the stage as a
    /// whole (e.g. a required key is missing).
    pub key: Option<String>,
    pub message: String,
    pub help: Option<String>,
}

impl OptionError {
    pub fn at(key: &str, message: impl Into<String>) -> OptionError {
        OptionError {
            key: Some(key.to_string()),
            message: message.into(),
            help: None,
        }
    }

    pub fn stage(message: impl Into<String>) -> OptionError {
        OptionError {
            key: None,
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> OptionError {
        self.help = Some(help.into());
        self
    }
}

/// The options struct of a stage kind. Every field has a default (the struct
/// derives `Default` and uses `#[serde(default)]`), so each key can be checked
/// on its own and every error reported, not only the first.
pub trait StageOptions:
    DeserializeOwned + Serialize + schemars::JsonSchema + Default + Sized
{
    /// Range and cross-field checks that serde's types can't express.
    fn validate(&self) -> Vec<OptionError> {
        Vec::new()
    }
}

/// Check an options table key by key, then as a whole.
pub fn check_options<T: StageOptions>(table: &toml::Table) -> Vec<OptionError> {
    let mut errors = Vec::new();
    let mut good = toml::Table::new();
    let schema = schemars::schema_for!(T);
    for (key, value) in table {
        let mut one = toml::Table::new();
        one.insert(key.clone(), value.clone());
        match toml::Value::Table(one).try_into::<T>() {
            Ok(_) => {
                good.insert(key.clone(), value.clone());
            }
            Err(_) if bounded_number(&schema, key).is_some() => {
                // A float for a count, a number too big for its type, a
                // string ...: the range says what is wanted.
                if let Some(e) = bounded_number(&schema, key).map(|(what, lo, hi)| {
                    OptionError::at(
                        key,
                        format!(
                            "`{key}` must be {what} from {lo} to {hi}, not {}",
                            shown(value)
                        ),
                    )
                }) {
                    errors.push(e);
                }
            }
            Err(e) => {
                let msg = clean_serde_message(e.message());
                let help = variant_suggestion(&msg);
                let mut err = OptionError::at(key, format!("`{key}`: {msg}"));
                err.help = help;
                errors.push(err);
            }
        }
    }
    errors.extend(check_bounds(&schema, &good));
    if errors.is_empty() {
        match toml::Value::Table(good).try_into::<T>() {
            Ok(opts) => errors.extend(opts.validate()),
            Err(e) => errors.push(OptionError::stage(clean_serde_message(e.message()))),
        }
    }
    errors
}

/// Check each number in `table` against the `minimum` and `maximum` its
/// option declares in the schema (the bounds `conveyor schema` shows, so
/// what is documented is what is enforced), and refuse NaN and infinities
/// in every float option.
fn check_bounds(schema: &schemars::Schema, table: &toml::Table) -> Vec<OptionError> {
    let props = schema.get("properties").and_then(|p| p.as_object());
    let mut errors = Vec::new();
    for (key, value) in table {
        let v = match value {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            _ => continue,
        };
        let prop = props.and_then(|p| p.get(key));
        let bound = |name: &str| prop.and_then(|p| p.get(name)).filter(|b| b.is_number());
        let (min, max) = (bound("minimum"), bound("maximum"));
        let too_small = min.and_then(|m| m.as_f64()).is_some_and(|m| v < m);
        let too_big = max.and_then(|m| m.as_f64()).is_some_and(|m| v > m);
        if v.is_finite() && !too_small && !too_big {
            continue;
        }
        let shown = shown(value);
        let message = match (min, max) {
            (Some(lo), Some(hi)) => format!("`{key}` must be from {lo} to {hi}, not {shown}"),
            (Some(lo), None) => format!("`{key}` must be at least {lo}, not {shown}"),
            (None, Some(hi)) => format!("`{key}` must be at most {hi}, not {shown}"),
            (None, None) => format!("`{key}` must be a finite number, not {shown}"),
        };
        errors.push(OptionError::at(key, message));
    }
    errors
}

/// `("a whole number" or "a number", minimum, maximum)` of an option whose
/// schema declares both bounds.
fn bounded_number(
    schema: &schemars::Schema,
    key: &str,
) -> Option<(&'static str, serde_json::Value, serde_json::Value)> {
    let prop = schema.get("properties")?.get(key)?;
    let types = prop.get("type")?;
    let is = |t: &str| {
        types.as_str() == Some(t) || types.as_array().is_some_and(|a| a.contains(&t.into()))
    };
    let what = if is("integer") {
        "a whole number"
    } else if is("number") {
        "a number"
    } else {
        return None;
    };
    Some((
        what,
        prop.get("minimum")?.clone(),
        prop.get("maximum")?.clone(),
    ))
}

/// A value as a message shows it: short, in the way it could be written.
fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::Float(f) if f.is_nan() => "nan".into(),
        toml::Value::Float(f) if f.is_infinite() => if *f > 0.0 { "inf" } else { "-inf" }.into(),
        toml::Value::Float(f) if f.abs() >= 1e9 || (*f != 0.0 && f.abs() < 1e-4) => {
            format!("{f:e}")
        }
        toml::Value::String(t) => format!("\"{t}\""),
        other => other.to_string(),
    }
}

/// The longest side, in pixels, that any option may give (widths, heights,
/// offsets, margins).
pub const MAX_SIDE: u32 = 100_000;

/// The most pixels an image made by a stage (resized, cropped, tiled) may
/// have: the same as `decode`'s default `max_pixels`.
pub const MAX_OUTPUT_PIXELS: u64 = 100_000_000;

/// The most bytes a stage may allocate for one image's pixels (as `decode`'s
/// default `max_alloc`).
pub const ALLOC_BUDGET: u64 = 1 << 30;

/// Why a `w` x `h` image of `bytes_per_pixel` can't be made, if it can't:
/// over [`MAX_OUTPUT_PIXELS`] or the allocation budget. Checked before
/// allocating, so a huge size fails the item instead of the process.
pub fn output_too_big(w: u64, h: u64, bytes_per_pixel: u64) -> Option<String> {
    let pixels = w.saturating_mul(h);
    if pixels > MAX_OUTPUT_PIXELS {
        return Some(format!(
            "the output would be {w}x{h} ({pixels} pixels), over the limit of {MAX_OUTPUT_PIXELS} pixels"
        ));
    }
    let bytes = pixels.saturating_mul(bytes_per_pixel);
    (bytes > ALLOC_BUDGET).then(|| {
        format!(
            "the output would be {w}x{h}, {} of pixels, over the budget of {}",
            crate::units::human_size(bytes),
            crate::units::human_size(ALLOC_BUDGET)
        )
    })
}

/// The largest file a stage reads unless told otherwise (`max_file_size`).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1 << 30;

/// The `max_file_size` option of the kinds that read files.
pub fn default_max_file_size() -> filter::Size {
    filter::Size::Text("1GiB".into())
}

/// Check a `max_file_size` option.
pub fn check_max_file_size(size: &filter::Size) -> Option<OptionError> {
    size.bytes()
        .err()
        .map(|e| OptionError::at("max_file_size", format!("`max_file_size`: {e}")))
}

/// The reason a file of `len` bytes is refused under `limit`.
pub(crate) fn too_large(len: u64, limit: u64) -> StageError {
    use crate::units::human_size;
    StageError(format!(
        "file is {}, over `max_file_size` ({})",
        human_size(len),
        human_size(limit)
    ))
}

/// Open an item's file and refuse it if its size is over `limit`.
pub(crate) fn open_bounded(path: &Path, limit: u64) -> Result<std::fs::File, StageError> {
    let file =
        std::fs::File::open(path).map_err(|e| StageError(format!("cannot read file: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| StageError(format!("cannot read file: {e}")))?
        .len();
    if len > limit {
        return Err(too_large(len, limit));
    }
    Ok(file)
}

/// Read the rest of `file` (after `head`), at most `limit` bytes in all: a
/// file that grows while it is read is still cut off at the limit.
fn read_rest_bounded(
    mut file: std::fs::File,
    mut head: Vec<u8>,
    limit: u64,
) -> Result<Vec<u8>, StageError> {
    use std::io::Read;
    let hint = file
        .metadata()
        .map(|m| m.len())
        .unwrap_or(0)
        .min(limit.saturating_add(1));
    head.reserve(
        usize::try_from(hint)
            .unwrap_or(0)
            .saturating_sub(head.len()),
    );
    let left = (limit + 1).saturating_sub(head.len() as u64);
    (&mut file)
        .take(left)
        .read_to_end(&mut head)
        .map_err(|e| StageError(format!("cannot read file: {e}")))?;
    if head.len() as u64 > limit {
        return Err(too_large(head.len() as u64, limit));
    }
    Ok(head)
}

/// Take the bytes of an item: its payload if it carries bytes, else the file,
/// refused when over `limit` bytes (a kind's `max_file_size`).
pub(crate) fn bytes_of(item: &mut Item, limit: u64) -> Result<Vec<u8>, StageError> {
    take_bytes(item, limit, false)
}

/// As [`bytes_of`], for bytes that must be an image: a file whose first bytes
/// are not those of an image format is refused before it is read whole.
pub(crate) fn image_bytes_of(item: &mut Item, limit: u64) -> Result<Vec<u8>, StageError> {
    take_bytes(item, limit, true)
}

fn take_bytes(item: &mut Item, limit: u64, image_only: bool) -> Result<Vec<u8>, StageError> {
    match std::mem::take(&mut item.payload) {
        crate::item::Payload::Bytes(b) => {
            if b.len() as u64 > limit {
                return Err(too_large(b.len() as u64, limit));
            }
            Ok(b)
        }
        crate::item::Payload::Nothing => {
            use std::io::Read;
            let mut file = open_bounded(&item.path, limit)?;
            let mut head = Vec::with_capacity(64);
            (&mut file)
                .take(64)
                .read_to_end(&mut head)
                .map_err(|e| StageError(format!("cannot read file: {e}")))?;
            if image_only && !head.is_empty() && image::guess_format(&head).is_err() {
                // The same words as when the whole file is read: only when it
                // is learnt differs.
                return Err(StageError::new("not a recognised image format"));
            }
            let bytes = read_rest_bounded(file, head, limit)?;
            item.meta.size = Some(bytes.len() as u64);
            Ok(bytes)
        }
        crate::item::Payload::Image(_) => {
            Err(StageError::new("expected bytes, got a decoded image"))
        }
    }
}

/// Turn a checked options table into the options struct.
pub fn parse_options<T: StageOptions>(table: &toml::Table) -> Result<T, String> {
    toml::Value::Table(table.clone())
        .try_into::<T>()
        .map_err(|e| clean_serde_message(e.message()))
}

/// For serde's "unknown variant `x`, expected one of `a`, `b`", the closest
/// expected value.
fn variant_suggestion(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown variant `")?;
    let (given, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    crate::suggest::suggest(given, candidates.iter().copied())
        .map(|s| format!("did you mean `{s}`?"))
}

/// serde's messages are good but end with details meant for programmers.
fn clean_serde_message(msg: &str) -> String {
    msg.trim().trim_end_matches('.').replace("\n", " ")
}

/// Everything conveyor knows about one stage kind.
#[derive(Clone)]
pub struct KindSpec {
    pub name: &'static str,
    /// One line for `conveyor stages`.
    pub summary: &'static str,
    /// Payloads it takes; empty for a source.
    pub accepts: Types,
    pub output: Output,
    /// JSON Schema of its options (names, types, defaults, docs).
    pub schema: fn() -> schemars::Schema,
    /// Per-key and whole-table checks of its options.
    pub check: fn(&toml::Table) -> Vec<OptionError>,
    /// Construct it from checked options.
    pub build: fn(&toml::Table, &BuildContext) -> Result<Built, String>,
    /// The paths its options name, for the checks made before any work
    /// (a writer into a scanned folder, two writers on one file ...).
    pub paths: fn(&toml::Table) -> StagePaths,
}

/// The files a stage's options name: what the checker needs to keep
/// writers off a run's inputs before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StagePaths {
    /// Neither reads nor writes files of its own.
    None,
    /// Reads the files a scope selects.
    Reads(crate::inputs::ScopeSpec),
    /// Writes files under `dir`, named by the template `filename`.
    Writes { dir: PathBuf, filename: String },
    /// Writes one file at the end of the run.
    Gathers(PathBuf),
}

/// For kinds whose options name no files.
pub fn no_paths(_: &toml::Table) -> StagePaths {
    StagePaths::None
}

impl KindSpec {
    pub fn is_source(&self) -> bool {
        self.accepts.is_empty()
    }

    /// Option names, as declared by the options struct.
    pub fn option_names(&self) -> Vec<String> {
        let schema = (self.schema)();
        schema
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// What this kind gives when fed `input`.
    pub fn output_types(&self, input: Types) -> Types {
        match self.output {
            Output::Fixed(t) => Types::of(&[t]),
            Output::SameAsInput => input,
        }
    }
}

impl fmt::Debug for KindSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KindSpec")
            .field("name", &self.name)
            .finish()
    }
}

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

/// Apply `f` to an item's decoded image and record the new size.
pub(crate) fn map_image(
    mut item: Item,
    f: impl FnOnce(image::DynamicImage) -> Result<image::DynamicImage, StageError>,
) -> Result<Option<Item>, StageError> {
    let crate::item::Payload::Image(img) = std::mem::take(&mut item.payload) else {
        return Err(StageError::new("expected a decoded image"));
    };
    let out = f(img)?;
    item.meta.width = Some(out.width());
    item.meta.height = Some(out.height());
    item.payload = crate::item::Payload::Image(out);
    Ok(Some(item))
}

/// Options of kinds that take none.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NoOptions {}

impl StageOptions for NoOptions {}
