using Hcsc.Losses;
using Hcsc.Models;
using Hcsc.Samples.ImageNetPretrain.Clustering;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// What the epochs of a run share: what a step changes (the model, the optimiser, the queue with its selection cache,
/// the random sources), the objective, what watches every step (the non-finite check, the TensorBoard log), and where
/// the batches come from.
/// </summary>
internal sealed record RunState(
    HcscModel Model,
    TorchSharp.Modules.OptimizerHelper Optimizer,
    SelectiveKeyQueue Queue,
    HcscObjective Objective,
    RunGenerators Generators,
    NonFiniteGuard Guard,
    TensorBoardLog? Board,
    BatchLoader Loader,
    DatasetPair Data,
    Device Device,
    KeyBank? Keys);

/// <summary>The run's explicit random sources: selection masks on the training device, the key-batch shuffle on the CPU.</summary>
internal sealed record RunGenerators(Generator Masks, Generator Shuffle);
