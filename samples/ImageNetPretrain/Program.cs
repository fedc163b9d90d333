using System.Runtime.InteropServices;
using Hcsc.Samples.ImageNetPretrain.Commands;

// libtorch's OpenMP threads busy-wait between operations by default, taking the cores the data
// workers need. Ask for passive waiting unless the user chose a policy; this must happen before
// libtorch loads, and through libc, since .NET keeps its own copy of the environment.
if (Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is null && !OperatingSystem.IsWindows())
{
    _ = NativeEnvironment.setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
}

return HcscCli.Create().Parse(args).Invoke();

internal static partial class NativeEnvironment
{
    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int setenv(string name, string value, int overwrite);
}
