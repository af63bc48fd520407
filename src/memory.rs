//! Handing memory back to the system after a config is loaded. Building a config parses each
//! WSDL into an element tree several times the size of the validator compiled from it; glibc's
//! allocator keeps the freed pages resident (measured: 8 MB of a 13.5 MB heap at idle) unless
//! asked to return them. Nothing else about memory lives here.

/// Returns the pages of freed heap memory to the system (glibc's `malloc_trim`); a no-op with
/// other C libraries.
pub fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::malloc_trim(0);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod glibc {
    // SAFETY: malloc_trim(3) takes any size and has no preconditions: it locks the allocator's
    // arenas itself and only gives back pages that lie wholly in free chunks. Declared `safe`
    // so that callers need no unsafe block; this is the product's only foreign function.
    unsafe extern "C" {
        pub safe fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
}
