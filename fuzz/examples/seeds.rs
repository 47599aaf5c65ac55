//! Writes the seed corpus, made with the crates' own encoders, to `fuzz/corpus/<target>/`.
//!
//! Run with: cargo xtask fuzz --seeds

fn main() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let n = foundation_fuzz::write_seeds(&dir)?;
    println!("wrote {n} seeds under {}", dir.display());
    Ok(())
}
