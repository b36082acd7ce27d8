//! Password hashing: argon2id's parameters and the pool that runs it, the answer
//! floor of password checks, and the ceilings on imported hashes.

use anyhow::bail;
use argon2::Params;

use crate::cli::{Floor, HashingArgs, ImportLimitArgs};
use crate::domain::model::imported::ImportLimits;
use crate::domain::runtime::hasher::HasherSettings;

pub(super) fn hasher(args: &HashingArgs) -> anyhow::Result<HasherSettings> {
    let params = Params::new(args.argon2_memory_kib, args.argon2_iterations, args.argon2_parallelism, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let imports = import_limits(&args.imports)?;
    let verify_answer_floor = match args.verify_answer_floor {
        Floor::Auto => None,
        Floor::Fixed(floor) => Some(floor),
    };
    let mut hasher = HasherSettings {
        params,
        queue_depth: args.hash_queue_depth.max(1),
        imports,
        verify_answer_floor,
        ..HasherSettings::default()
    };
    if let Some(workers) = args.hash_workers {
        if workers == 0 {
            bail!("--hash-workers must be at least 1");
        }
        hasher.workers = workers;
    }
    Ok(hasher)
}

/// The ceilings on the cost of checking an imported hash, and whether weak ones pass.
pub(super) fn import_limits(args: &ImportLimitArgs) -> anyhow::Result<ImportLimits> {
    if args.import_max_pbkdf2_iterations.is_some() || args.import_max_bcrypt_cost.is_some() {
        bail!(
            "--import-max-pbkdf2-iterations and --import-max-bcrypt-cost are gone: one ceiling prices the whole \
             parameter set of an imported hash, --import-max-cost-ms (with --import-max-memory-kib)"
        );
    }
    Ok(ImportLimits {
        max_cost_micros: args.import_max_cost_ms.saturating_mul(1000),
        max_memory_kib: args.import_max_memory_kib,
        allow_weak: args.allow_weak_imported_hashes,
    })
}
