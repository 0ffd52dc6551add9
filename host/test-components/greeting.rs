/// The greeting every greeter test component makes (shared so the linked and the single-component
/// workloads do the same work).
pub fn greeting(name: &str) -> String {
    let name = if name.is_empty() { "world" } else { name };
    format!("Hello, {name}!\n")
}
