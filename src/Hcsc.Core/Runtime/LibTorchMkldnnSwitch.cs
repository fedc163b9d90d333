using System.Runtime.InteropServices;
using TorchSharp;

namespace Hcsc.Core.Runtime;

/// <summary>
/// libtorch's process-wide "use oneDNN (MKL-DNN)" flag, <c>at::globalContext().userEnabledMkldnn()</c>, which
/// TorchSharp does not expose (PyTorch: <c>torch.backends.mkldnn.enabled</c>). When it is off, CPU convolutions
/// run ATen's own im2col + BLAS kernels instead of oneDNN's; batch norm, pooling and float32 matrix products do
/// not use oneDNN either way.
/// </summary>
internal static unsafe class LibTorchMkldnnSwitch
{
    private static readonly Lazy<Entry?> Entries = new(Find, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>True when the flag can be read and written in this process (libtorch found, symbols exported).</summary>
    public static bool IsAvailable => Entries.Value is not null;

    /// <summary>libtorch's current flag.</summary>
    /// <exception cref="PlatformNotSupportedException">libtorch's context could not be reached.</exception>
    public static bool Enabled
    {
        get
        {
            var entry = Require();
            return entry.Get(entry.GlobalContext()) != 0;
        }

        set
        {
            var entry = Require();
            entry.Set(entry.GlobalContext(), value ? (byte)1 : (byte)0);
        }
    }

    private static Entry Require() => Entries.Value ?? throw new PlatformNotSupportedException(
        "libtorch's oneDNN switch (at::Context::setUserEnabledMkldnn) was not found in this process's libtorch_cpu library.");

    private static Entry? Find()
    {
        torch.InitializeDeviceType(DeviceType.CPU); // loads libtorch
        foreach (string name in LibraryCandidates())
        {
            if (!NativeLibrary.TryLoad(name, out var handle))
            {
                continue;
            }

            foreach (var (context, set, get) in SymbolNames)
            {
                if (NativeLibrary.TryGetExport(handle, context, out var c)
                    && NativeLibrary.TryGetExport(handle, set, out var s)
                    && NativeLibrary.TryGetExport(handle, get, out var g))
                {
                    return new Entry(
                        (delegate* unmanaged<IntPtr>)c,
                        (delegate* unmanaged<IntPtr, byte, void>)s,
                        (delegate* unmanaged<IntPtr, byte>)g);
                }
            }
        }

        return null;
    }

    // The library is already loaded by TorchSharp; a bare name finds it by soname, a path finds the app's copy.
    private static IEnumerable<string> LibraryCandidates()
    {
        string file = OperatingSystem.IsWindows() ? "torch_cpu.dll" : OperatingSystem.IsMacOS() ? "libtorch_cpu.dylib" : "libtorch_cpu.so";
        yield return file;
        string rid = RuntimeInformation.RuntimeIdentifier;
        foreach (string? directory in new[] { AppContext.BaseDirectory, Path.GetDirectoryName(typeof(torch).Assembly.Location) })
        {
            if (!string.IsNullOrEmpty(directory))
            {
                yield return Path.Combine(directory, file);
                yield return Path.Combine(directory, "runtimes", rid, "native", file);
            }
        }
    }

    // at::globalContext(), at::Context::setUserEnabledMkldnn(bool), at::Context::userEnabledMkldnn() const:
    // Itanium names (Linux, macOS), then MSVC names (Windows). Member functions take `this` first.
    private static readonly (string Context, string Set, string Get)[] SymbolNames =
    [
        ("_ZN2at13globalContextEv", "_ZN2at7Context20setUserEnabledMkldnnEb", "_ZNK2at7Context17userEnabledMkldnnEv"),
        ("?globalContext@at@@YAAEAVContext@1@XZ", "?setUserEnabledMkldnn@Context@at@@QEAAX_N@Z", "?userEnabledMkldnn@Context@at@@QEBA_NXZ"),
    ];

    private sealed class Entry(delegate* unmanaged<IntPtr> globalContext, delegate* unmanaged<IntPtr, byte, void> set, delegate* unmanaged<IntPtr, byte> get)
    {
        public IntPtr GlobalContext() => globalContext();

        public void Set(IntPtr context, byte enabled) => set(context, enabled);

        public byte Get(IntPtr context) => get(context);
    }
}
