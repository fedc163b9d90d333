using Hcsc.Runtime;
using Hcsc.Samples.ImageNetPretrain.Commands;

// Before any TorchSharp call: libtorch's busy-waiting OpenMP threads would take the data workers' cores.
OpenMpWaitPolicy.PreferPassive();
// libtorch's process-wide settings for training (oneDNN on CPUs without caches, glibc's heap, NNPACK), asked for once.
TorchRuntime.Prepare();
// SIGINT and SIGTERM are the pretrain command's own (a checkpoint at the next step), not System.CommandLine's.
return HcscCli.Create().Parse(args).Invoke(new System.CommandLine.InvocationConfiguration { ProcessTerminationTimeout = null });
