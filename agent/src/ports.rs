//! `pos-agent ports`: the serial ports of this machine, to help the store manager
//! write `[[scanner]] port = ...`.
//!
//! Lists what `serialport` enumerates (with USB vendor/product ids, serial number,
//! manufacturer and product where the system knows them) and the stable
//! `/dev/serial/by-id` names, which survive replugging into another USB socket and
//! are what the config should use. It never fails on a machine without serial ports
//! or without `/sys` (a container): it says so instead.

use serialport::{SerialPortInfo, SerialPortType};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where udev puts stable names of serial devices on Linux.
pub const BY_ID_DIR: &str = "/dev/serial/by-id";

/// USB details of a port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsbIds {
    /// Vendor id.
    pub vid: u16,
    /// Product id.
    pub pid: u16,
    /// Serial number.
    pub serial_number: Option<String>,
    /// Manufacturer name.
    pub manufacturer: Option<String>,
    /// Product name.
    pub product: Option<String>,
}

/// One port as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRow {
    /// Device path.
    pub path: String,
    /// `usb`, `pci`, `bluetooth` or `unknown`.
    pub kind: &'static str,
    /// USB details, for USB ports.
    pub usb: Option<UsbIds>,
}

impl From<SerialPortInfo> for PortRow {
    fn from(info: SerialPortInfo) -> Self {
        let (kind, usb) = match info.port_type {
            SerialPortType::UsbPort(u) => (
                "usb",
                Some(UsbIds {
                    vid: u.vid,
                    pid: u.pid,
                    serial_number: u.serial_number,
                    manufacturer: u.manufacturer,
                    product: u.product,
                }),
            ),
            SerialPortType::PciPort => ("pci", None),
            SerialPortType::BluetoothPort => ("bluetooth", None),
            SerialPortType::Unknown => ("unknown", None),
        };
        Self {
            path: info.port_name,
            kind,
            usb,
        }
    }
}

/// A stable name and the device it points to (`None`: a dangling link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StableName {
    /// The link.
    pub link: PathBuf,
    /// Its target, resolved.
    pub target: Option<PathBuf>,
}

/// Prints the report to stdout.
pub fn run() -> anyhow::Result<()> {
    print!(
        "{}",
        render(&list_ports(), &stable_names(Path::new(BY_ID_DIR)))
    );
    Ok(())
}

/// The ports `serialport` finds, sorted by path, or why it could not look.
pub fn list_ports() -> Result<Vec<PortRow>, String> {
    // Without udev, serialport walks /sys/class/tty and panics when it is missing.
    #[cfg(target_os = "linux")]
    if !Path::new("/sys/class/tty").is_dir() {
        return Err("/sys/class/tty is missing (a container without /sys?)".to_owned());
    }
    let mut rows: Vec<PortRow> = serialport::available_ports()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(PortRow::from)
        .collect();
    rows.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(rows)
}

/// The symlinks in `dir` with their resolved targets, sorted; empty when `dir` does
/// not exist.
pub fn stable_names(dir: &Path) -> Vec<StableName> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<StableName> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_symlink())
        .map(|link| StableName {
            target: std::fs::canonicalize(&link).ok(),
            link,
        })
        .collect();
    names.sort_by(|a, b| a.link.cmp(&b.link));
    names
}

/// The human-readable report.
pub fn render(ports: &Result<Vec<PortRow>, String>, names: &[StableName]) -> String {
    let mut out = String::new();
    match ports {
        Err(e) => {
            let _ = writeln!(out, "Cannot enumerate serial ports: {e}");
        }
        Ok(rows) if rows.is_empty() => {
            out.push_str(
                "No serial ports found.\n\
                 A scanner in USB-CDC (virtual COM port) mode appears as /dev/ttyACM*, an \
                 RS-232 adapter as /dev/ttyUSB*.\n\
                 If one is plugged in: check `dmesg`, and that the scanner is set to USB-CDC \
                 (not USB keyboard/HID) mode.\n",
            );
        }
        Ok(rows) => {
            out.push_str("Serial ports:\n");
            let width = rows.iter().map(|r| r.path.len()).max().unwrap_or(0);
            for row in rows {
                let _ = write!(out, "  {:<width$}  {}", row.path, row.kind);
                if let Some(usb) = &row.usb {
                    let _ = write!(out, "  {:04x}:{:04x}", usb.vid, usb.pid);
                    for (label, value) in [
                        ("manufacturer", &usb.manufacturer),
                        ("product", &usb.product),
                        ("serial", &usb.serial_number),
                    ] {
                        if let Some(v) = value {
                            let _ = write!(out, "  {label} \"{}\"", v.escape_debug());
                        }
                    }
                }
                out.push('\n');
            }
        }
    }
    if !names.is_empty() {
        out.push_str(
            "\nStable names (use these as `port` in [[scanner]]; they survive replugging):\n",
        );
        for name in names {
            let target = name
                .target
                .as_ref()
                .map_or_else(|| "(dangling link)".to_owned(), |t| t.display().to_string());
            let _ = writeln!(out, "  {} -> {target}", name.link.display());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usb_ports_show_their_ids_in_hex_and_names() {
        let rows = vec![
            PortRow {
                path: "/dev/ttyACM0".into(),
                kind: "usb",
                usb: Some(UsbIds {
                    vid: 0x05e0,
                    pid: 0x1200,
                    serial_number: Some("S123".into()),
                    manufacturer: Some("Zebra".into()),
                    product: None,
                }),
            },
            PortRow {
                path: "/dev/ttyS0".into(),
                kind: "pci",
                usb: None,
            },
        ];
        let text = render(&Ok(rows), &[]);
        assert!(
            text.contains(
                "/dev/ttyACM0  usb  05e0:1200  manufacturer \"Zebra\"  serial \"S123\"\n"
            ),
            "{text}"
        );
        assert!(text.contains("/dev/ttyS0    pci\n"), "{text}");
        assert!(!text.contains("Stable names"));
    }

    #[test]
    fn no_ports_gives_a_hint_instead_of_nothing() {
        let text = render(&Ok(Vec::new()), &[]);
        assert!(text.starts_with("No serial ports found."), "{text}");
        let text = render(&Err("no /sys".into()), &[]);
        assert!(
            text.contains("Cannot enumerate serial ports: no /sys"),
            "{text}"
        );
    }

    #[test]
    fn stable_names_are_listed_with_their_targets() {
        let dir = tempfile::tempdir().unwrap();
        let device = dir.path().join("ttyACM7");
        std::fs::write(&device, "").unwrap();
        std::os::unix::fs::symlink(&device, dir.path().join("usb-Scanner-if00")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("usb-Old-if00"))
            .unwrap();
        let names = stable_names(dir.path());
        assert_eq!(names.len(), 2);
        let text = render(&Ok(Vec::new()), &names);
        let device = std::fs::canonicalize(&device).unwrap();
        assert!(
            text.contains(&format!("usb-Scanner-if00 -> {}", device.display())),
            "{text}"
        );
        assert!(text.contains("usb-Old-if00 -> (dangling link)"), "{text}");
        assert!(stable_names(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn listing_never_panics_here() {
        let _ = list_ports();
    }
}
