import egmain
egmain.main()
