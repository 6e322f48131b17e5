//! `sqlx::migrate!` embeds the migration files when the crate compiles, but
//! cargo does not see them as inputs: without this, a changed or added
//! migration left a build that still carried the old ones.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
