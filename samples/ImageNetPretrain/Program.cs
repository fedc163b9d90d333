using Hcsc.Core.Runtime;
using Hcsc.Samples.ImageNetPretrain.Commands;

// Before any TorchSharp call: libtorch's busy-waiting OpenMP threads would take the data workers' cores.
OpenMpWaitPolicy.PreferPassive();
return HcscCli.Create().Parse(args).Invoke();
