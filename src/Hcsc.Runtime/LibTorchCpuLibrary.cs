using System.Runtime.InteropServices;
using TorchSharp;

namespace Hcsc.Runtime;

/// <summary>
/// Exported functions of the libtorch CPU library that TorchSharp loaded into this process, found by their mangled
/// names: the Itanium name (Linux, macOS) or the MSVC name (Windows) of the same function.
/// </summary>
internal static class LibTorchCpuLibrary
{
    private static readonly Lazy<IntPtr[]> Handles = new(Load, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The address of the first of <paramref name="names"/> that the library exports, or <see cref="IntPtr.Zero"/>.</summary>
    public static IntPtr Find(params string[] names)
    {
        foreach (var handle in Handles.Value)
        {
            foreach (string name in names)
            {
                if (NativeLibrary.TryGetExport(handle, name, out var address))
                {
                    return address;
                }
            }
        }

        return IntPtr.Zero;
    }

    private static IntPtr[] Load()
    {
        torch.InitializeDeviceType(DeviceType.CPU); // loads libtorch
        return Candidates().Select(name => NativeLibrary.TryLoad(name, out var handle) ? handle : IntPtr.Zero).Where(h => h != IntPtr.Zero).ToArray();
    }

    // The library is already loaded by TorchSharp; a bare name finds it by soname, a path finds the app's copy.
    private static IEnumerable<string> Candidates()
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
}
