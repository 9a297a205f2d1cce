// The one binary: choose the BLAS kernels for this CPU, then run the command.
KernelStartup.run()
Stagewise.main()
