//! The cdylib inspection test dlopens res_handoff.so in the test process, which stands in for
//! the asterisk binary: the symbols the module resolves at load time must be exported from it.
fn main() {
    println!("cargo:rustc-link-arg-tests=-rdynamic");
}
