//! With the `cuda` feature, compiles `src/ops/cuda/kernels.cu` to PTX with nvcc (for the
//! compute capability in `CUDA_COMPUTE_CAP`, else the GPU nvidia-smi reports) and writes the
//! Rust constant that embeds it. Always: sets `cfg(host_cxx)` where a C++ compiler runs (`$CXX`,
//! else `c++`), so that the unit tests which compile the kernels as C++ are ignored, with the
//! reason, where none does.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CXX");
    println!("cargo::rustc-check-cfg=cfg(host_cxx)");
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let runs = std::process::Command::new(&cxx).arg("--version").output().is_ok_and(|o| o.status.success());
    if runs {
        println!("cargo::rustc-cfg=host_cxx");
    }
    #[cfg(feature = "cuda")]
    {
        println!("cargo::rerun-if-changed=src/ops/cuda/kernels.cu");
        println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        bindgen_cuda::Builder::default()
            .kernel_paths(vec!["src/ops/cuda/kernels.cu"])
            .arg("-O3")
            .build_ptx()
            .expect("nvcc could not compile src/ops/cuda/kernels.cu (see docs/gpu.md for the toolkit)")
            .write(out.join("ptx.rs"))
            .expect("could not write the PTX bindings");
    }
}
