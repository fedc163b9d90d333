namespace Hcsc.Runtime;

/// <summary>What <see cref="TorchRuntime.Prepare"/> decided, one decision per setting, each with its reason.</summary>
/// <param name="OneDnn">oneDNN's convolutions on or off (<see cref="OneDnnGuard"/>).</param>
/// <param name="Heap">glibc's heap thresholds (<see cref="NativeHeap"/>).</param>
/// <param name="Nnpack">NNPACK's fallback (<see cref="NnpackGuard"/>).</param>
public sealed record TorchRuntimeReport(OneDnnDecision OneDnn, NativeHeapDecision Heap, NnpackDecision Nnpack);
