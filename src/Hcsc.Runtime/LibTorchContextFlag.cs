namespace Hcsc.Runtime;

/// <summary>
/// A process-wide switch of libtorch's <c>at::globalContext()</c> that TorchSharp does not expose: whether CPU
/// convolutions may use oneDNN (PyTorch: <c>torch.backends.mkldnn.enabled</c>) or NNPACK
/// (<c>torch.backends.nnpack.enabled</c>). With both off, CPU convolutions run ATen's own im2col + BLAS kernels.
/// </summary>
internal sealed unsafe class LibTorchContextFlag
{
    /// <summary><c>at::Context::userEnabledMkldnn</c>: oneDNN convolutions. Batch norm, pooling and float32 matrix products do not use oneDNN either way.</summary>
    public static readonly LibTorchContextFlag Mkldnn = new("oneDNN", "Mkldnn", "_ZN2at7Context20setUserEnabledMkldnnEb", "_ZNK2at7Context17userEnabledMkldnnEv");

    /// <summary><c>at::Context::userEnabledNNPACK</c>: NNPACK convolutions (tried for float32 batches of 16 or more when oneDNN is not used).</summary>
    public static readonly LibTorchContextFlag Nnpack = new("NNPACK", "NNPACK", "_ZN2at7Context20setUserEnabledNNPACKEb", "_ZNK2at7Context17userEnabledNNPACKEv");

    /// <summary>
    /// <c>at::Context::benchmarkCuDNN</c> (PyTorch: <c>torch.backends.cudnn.benchmark</c>): cuDNN times its convolution
    /// algorithms for each new input shape and keeps the fastest. No effect on the CPU.
    /// </summary>
    public static readonly LibTorchContextFlag CuDnnBenchmark = new(
        "cuDNN benchmark", "_ZN2at7Context17setBenchmarkCuDNNEb", "_ZNK2at7Context14benchmarkCuDNNEv",
        "?setBenchmarkCuDNN@Context@at@@QEAAX_N@Z", "?benchmarkCuDNN@Context@at@@QEBA_NXZ");

    private readonly string _description;
    private readonly string _setter;
    private readonly Lazy<Entry?> _entry;

    private LibTorchContextFlag(string description, string member, string itaniumSet, string itaniumGet)
        : this(description, itaniumSet, itaniumGet, $"?setUserEnabled{member}@Context@at@@QEAAX_N@Z", $"?userEnabled{member}@Context@at@@QEBA_NXZ")
    {
    }

    private LibTorchContextFlag(string description, string itaniumSet, string itaniumGet, string windowsSet, string windowsGet)
    {
        _description = description;
        _setter = itaniumSet;
        _entry = new(() => Find(itaniumSet, itaniumGet, windowsSet, windowsGet), LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>True when the flag can be read and written in this process (libtorch found, symbols exported).</summary>
    public bool IsAvailable => _entry.Value is not null;

    /// <summary>libtorch's current flag.</summary>
    /// <exception cref="PlatformNotSupportedException">libtorch's context could not be reached.</exception>
    public bool Enabled
    {
        get
        {
            var entry = Require();
            return entry.Get(entry.Context()) != 0;
        }

        set
        {
            var entry = Require();
            entry.Set(entry.Context(), value ? (byte)1 : (byte)0);
        }
    }

    private Entry Require() => _entry.Value ?? throw new PlatformNotSupportedException(
        $"libtorch's {_description} switch ({_setter}) was not found in this process's libtorch_cpu library.");

    // at::globalContext(), at::Context::setX(bool), at::Context::x() const; member functions take `this` first.
    private static Entry? Find(string itaniumSet, string itaniumGet, string windowsSet, string windowsGet)
    {
        var context = LibTorchCpuLibrary.Find("_ZN2at13globalContextEv", "?globalContext@at@@YAAEAVContext@1@XZ");
        var set = LibTorchCpuLibrary.Find(itaniumSet, windowsSet);
        var get = LibTorchCpuLibrary.Find(itaniumGet, windowsGet);
        return context == IntPtr.Zero || set == IntPtr.Zero || get == IntPtr.Zero
            ? null
            : new Entry((delegate* unmanaged<IntPtr>)context, (delegate* unmanaged<IntPtr, byte, void>)set, (delegate* unmanaged<IntPtr, byte>)get);
    }

    private sealed class Entry(delegate* unmanaged<IntPtr> context, delegate* unmanaged<IntPtr, byte, void> set, delegate* unmanaged<IntPtr, byte> get)
    {
        public IntPtr Context() => context();

        public void Set(IntPtr instance, byte enabled) => set(instance, enabled);

        public byte Get(IntPtr instance) => get(instance);
    }
}
