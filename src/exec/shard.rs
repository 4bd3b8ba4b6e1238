//! Shards: deterministic slices of a run's input, so that N independent
//! runs (Slurm array tasks, Kubernetes indexed jobs) together process every
//! file exactly once. A file's shard depends only on its path relative to the
//! scan root: not on scan order, on the machine, or on other files.

use std::fmt;

/// This run's slice: `index` of `count`, 0-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// FNV-1a: small, stable across versions and platforms (unlike std's hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Why a shard could not be chosen; the texts name what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardError {
    NotIndexOfCount(String),
    BadIndex(String),
    BadCount(String),
    NoShards,
    IndexTooBig { index: u32, count: u32 },
    BadVariable { name: String, value: String },
    NoCount,
    NotInAJob,
}

impl std::fmt::Display for ShardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardError::NotIndexOfCount(t) => {
                write!(f, "`{t}` is not I/N (e.g. 0/4) or `auto`")
            }
            ShardError::BadIndex(i) => write!(f, "shard index `{i}` is not a number"),
            ShardError::BadCount(n) => write!(f, "shard count `{n}` is not a number"),
            ShardError::NoShards => f.write_str("the shard count must be at least 1"),
            ShardError::IndexTooBig { index, count } => write!(
                f,
                "shard index {index} must be below the count {count} (indices start at 0)"
            ),
            ShardError::BadVariable { name, value } => write!(f, "{name}={value} is not a number"),
            ShardError::NoCount => f.write_str(
                "JOB_COMPLETION_INDEX is set but not the shard count: pass --shards N or set CONVEYOR_SHARDS",
            ),
            ShardError::NotInAJob => f.write_str(
                "--shard auto needs SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (a Slurm array task), \
                 or JOB_COMPLETION_INDEX (a Kubernetes indexed job) with --shards N",
            ),
        }
    }
}

impl std::error::Error for ShardError {}

impl Shard {
    /// Parse `I/N`.
    pub fn parse(text: &str) -> Result<Shard, ShardError> {
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| ShardError::NotIndexOfCount(text.to_string()))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| ShardError::BadIndex(i.to_string()))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| ShardError::BadCount(n.to_string()))?;
        if count == 0 {
            return Err(ShardError::NoShards);
        }
        if index >= count {
            return Err(ShardError::IndexTooBig { index, count });
        }
        Ok(Shard { index, count })
    }

    /// `--shard auto`: from Slurm's array variables, or from a Kubernetes
    /// indexed job's `JOB_COMPLETION_INDEX` with the count given by
    /// `--shards` or `CONVEYOR_SHARDS`.
    pub fn from_env(
        env: impl Fn(&str) -> Option<String>,
        shards: Option<u32>,
    ) -> Result<Shard, ShardError> {
        let num = |name: &str| -> Result<Option<u32>, ShardError> {
            match env(name) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| ShardError::BadVariable {
                        name: name.to_string(),
                        value: v,
                    }),
            }
        };
        if let (Some(index), Some(count)) =
            (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?)
        {
            // Arrays may start at another offset than 0.
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            return Shard::parse(&format!("{}/{count}", index.saturating_sub(min)));
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let count = match shards {
                Some(c) => c,
                None => num("CONVEYOR_SHARDS")?.ok_or(ShardError::NoCount)?,
            };
            return Shard::parse(&format!("{index}/{count}"));
        }
        Err(ShardError::NotInAJob)
    }

    /// Whether the file at `rel` (relative to the scan root, `/`-separated)
    /// belongs to this shard.
    pub fn takes(&self, rel: &str) -> bool {
        self.count <= 1 || fnv1a(rel.as_bytes()) % u64::from(self.count) == u64::from(self.index)
    }

    /// Added to resume journal names, so shards never share one.
    pub fn tag(&self) -> String {
        format!(".shard-{}-of-{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("dir{}/IMG_{i:05}.jpg", i % 7))
            .collect()
    }

    #[test]
    fn every_file_lands_in_exactly_one_shard() {
        for count in [1u32, 2, 3, 4, 8] {
            let files = names(1000);
            let mut seen = vec![0; files.len()];
            for index in 0..count {
                let s = Shard { index, count };
                for (i, f) in files.iter().enumerate() {
                    if s.takes(f) {
                        seen[i] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "count {count}");
        }
        // And the slices are not lopsided.
        let s = Shard { index: 0, count: 4 };
        let taken = names(4000).iter().filter(|f| s.takes(f)).count();
        assert!((800..1200).contains(&taken), "{taken} of 4000");
    }

    #[test]
    fn assignment_ignores_order_and_other_files() {
        let s = Shard { index: 1, count: 3 };
        let before: Vec<String> = names(500).into_iter().filter(|f| s.takes(f)).collect();
        let mut shuffled = names(500);
        shuffled.reverse();
        let mut more = shuffled.clone();
        more.extend((0..300).map(|i| format!("new/{i}.png")));
        let after: Vec<String> = more
            .into_iter()
            .filter(|f| s.takes(f) && !f.starts_with("new/"))
            .collect();
        let mut a = before.clone();
        let mut b = after;
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn parsing_and_environment() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        assert!(
            Shard::parse("4/4")
                .unwrap_err()
                .to_string()
                .contains("below the count")
        );
        assert!(Shard::parse("x").is_err());
        let slurm = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("3".to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some("4".to_string()),
            _ => None,
        };
        assert_eq!(
            Shard::from_env(slurm, None),
            Ok(Shard { index: 3, count: 4 })
        );
        let k8s = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "1".to_string());
        assert_eq!(
            Shard::from_env(k8s, Some(5)),
            Ok(Shard { index: 1, count: 5 })
        );
        assert!(
            Shard::from_env(k8s, None)
                .unwrap_err()
                .to_string()
                .contains("--shards")
        );
        assert!(
            Shard::from_env(|_| None, None)
                .unwrap_err()
                .to_string()
                .contains("SLURM_ARRAY_TASK_ID")
        );
    }
}
