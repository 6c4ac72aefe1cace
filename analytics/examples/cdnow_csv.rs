//! Writes a CDNOW file as the purchases CSV `sync-server import purchases` reads (one
//! card per customer, one sale per purchase), to stdout:
//!
//! ```sh
//! cargo run -p analytics --example cdnow_csv CDNOW_sample.txt > cdnow-sample.csv
//! cargo run -p analytics --example cdnow_csv > cdnow-master.csv      # CDNOW_master.txt
//! sync-server import purchases cdnow-sample.csv
//! ```

#[path = "../tests/common/cdnow.rs"]
#[allow(dead_code)] // The example uses only the loader and the CSV writer.
mod cdnow;

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "CDNOW_master.txt".to_owned());
    let purchases = cdnow::load(&file)?;
    std::io::stdout()
        .lock()
        .write_all(cdnow::import_csv(&purchases).as_bytes())?;
    Ok(())
}
