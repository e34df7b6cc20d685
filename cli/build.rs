//! Records which patched zsh build matches this source: `execgate doctor`
//! compares it with the stamp `scripts/build-zsh.sh` leaves beside its
//! build (the same hash of the patch and the build script).

use std::path::Path;

use sha2::{Digest, Sha256};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut hasher = Sha256::new();
    for input in ["zsh-patch/execgate-exec-hook.patch", "scripts/build-zsh.sh"] {
        let path = root.join(input);
        println!("cargo:rerun-if-changed={}", path.display());
        hasher.update(std::fs::read(&path)?);
    }
    println!("cargo:rustc-env=EXECGATE_ZSH_STAMP={:x}", hasher.finalize());
    Ok(())
}
