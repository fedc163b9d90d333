using System.Runtime.CompilerServices;
using Hcsc.Runtime;

namespace Hcsc.Tests;

/// <summary>The tests prepare libtorch as an application does, once, before the first test (docs/troubleshooting.md).</summary>
internal static class TestRuntime
{
    [ModuleInitializer]
    internal static void Prepare() => TorchRuntime.Prepare();
}
