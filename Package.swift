// swift-tools-version: 6.0
import PackageDescription

/// dsconv: verify, re-shard, quantize, compress and run DeepSeek-V2 / V2.5 checkpoints on a CPU host.
///
/// Targets follow the pipeline (see Formats/ and the README's layout table): the C shims know
/// nothing; `SafeTensors` is tensor storage (the file format, the `TensorStore` protocol, output
/// directories); `DeepSeek` knows the model and reads weights only through `TensorStore`;
/// `Compression` and `Sharding` are further stores and writers; `Checkpoints` detects and opens
/// every checkpoint kind; `dsconv` is a thin CLI over them. Linux only (Glibc, /proc, renameat2).
/// Hot text paths skip dynamic exclusivity checks (their buffers are never aliased).
let fastText: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "dsconv",
    products: [
        .executable(name: "dsconv", targets: ["dsconv"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        .target(
            name: "CKernels",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]
        ),
        .target(name: "CSystem"),
        .target(name: "Failures"),
        .target(name: "JSON", dependencies: ["Failures"]),
        .target(name: "Primitives", dependencies: ["CKernels"]),
        .target(name: "Kernels", dependencies: ["Primitives", "CKernels", "COpenBLAS"]),
        .target(name: "SafeTensors", dependencies: ["JSON", "CSystem", "Primitives", "Failures"]),
        .target(name: "DeepSeek", dependencies: ["SafeTensors", "Kernels", "CKernels", "JSON", "Quantization", "Failures"]),
        .target(name: "Sharding", dependencies: ["DeepSeek", "SafeTensors", "Kernels", "JSON", "Compression", "Failures"]),
        .target(name: "Compression", dependencies: ["CZstd", "CKernels", "Kernels", "SafeTensors", "JSON", "Failures"]),
        .target(name: "Checkpoints", dependencies: ["DeepSeek", "SafeTensors", "Compression", "Sharding", "Kernels"]),
        .target(name: "Quantization", dependencies: ["CKernels", "COpenBLAS"]),
        .target(name: "Serving", dependencies: ["DeepSeek", "Quantization", "JSON"]),
        .target(name: "ModelQuantizer", dependencies: ["Serving", "DeepSeek", "Quantization", "SafeTensors", "Kernels", "CKernels", "JSON", "HDF5", "Compression"]),
        .target(name: "HDF5", dependencies: ["CHDF5", "Failures"]),
        .target(name: "Tokenizer", dependencies: ["JSON", "Failures"], swiftSettings: fastText),
        .target(name: "ChatTemplate", dependencies: ["JSON", "Failures"]),
        .target(name: "ModelText", dependencies: ["DeepSeek", "Tokenizer", "ChatTemplate", "JSON", "SafeTensors"]),
        .executableTarget(
            name: "dsconv",
            dependencies: [
                "DeepSeek", "SafeTensors", "Kernels", "JSON", "Tokenizer", "ChatTemplate", "Sharding", "Compression",
                "Quantization", "ModelQuantizer", "HDF5", "Checkpoints", "Serving", "Failures", "ModelText",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "dsconv-bench", dependencies: ["DeepSeek", "SafeTensors", "Kernels", "CKernels", "Compression", "Tokenizer", "JSON"]),
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "CompressionTests", dependencies: ["TestSupport", "Compression", "CKernels", "Kernels", "SafeTensors", "JSON"]),
        .testTarget(name: "QuantizationTests", dependencies: ["TestSupport", "Quantization", "Kernels", "CKernels", "SafeTensors", "JSON"]),
        .testTarget(name: "ModelQuantizerTests", dependencies: ["TestSupport", "ModelQuantizer", "DeepSeek", "Quantization", "Kernels", "HDF5", "SafeTensors"]),
        .testTarget(name: "ServingTests", dependencies: ["Serving", "ModelQuantizer", "DeepSeek", "Quantization"]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "CKernels"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["TestSupport", "SafeTensors", "JSON"]),
        .testTarget(name: "DeepSeekTests", dependencies: ["TestSupport", "DeepSeek", "SafeTensors", "Kernels", "JSON", "Quantization"],
                    resources: []),
        .testTarget(name: "CLITests", dependencies: ["TestSupport", "JSON", "HDF5", "SafeTensors"]),
        .testTarget(name: "ShardingTests", dependencies: ["TestSupport", "Sharding", "DeepSeek", "SafeTensors", "Kernels", "JSON"]),
        .testTarget(name: "TokenizerTests", dependencies: ["TestSupport", "Tokenizer", "ChatTemplate", "JSON"]),
    ]
)
